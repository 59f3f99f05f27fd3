"""The console's forms (Flask-WTF): every one carries a CSRF token, checked before any view runs."""
from __future__ import annotations

from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import DateField, RadioField, SelectField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length, Optional

from backoffice import audit, handoffs


class ActionForm(FlaskForm):
    """A button that changes something (delete, re-enable, requeue, start an import): the token is all it holds."""


class AnswerForm(FlaskForm):
    resolution = RadioField(choices=list(handoffs.RESOLUTIONS), validators=[DataRequired()])
    note = TextAreaField(validators=[DataRequired(), Length(max=handoffs.MAX_NOTE)])


class SearchForm(FlaskForm):
    phone = StringField(validators=[DataRequired(), Length(max=40)])


class AuditFilterForm(FlaskForm):
    phone = StringField(validators=[Optional(), Length(max=40)])
    actor = StringField(validators=[Optional(), Length(max=100)])
    action = SelectField(choices=["", *audit.ACTIONS], validators=[Optional()])
    since = DateField(validators=[Optional()])
    until = DateField(validators=[Optional()])


class ImportForm(FlaskForm):
    file = FileField(validators=[FileRequired()])


class LanguageForm(FlaskForm):
    lang = StringField(validators=[DataRequired(), Length(max=5)])
