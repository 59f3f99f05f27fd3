"""The CX protocol room: request/response models, the tag registry, dispatch, the HTTP edge and the app factory.

Knows CX; knows no SQL.
"""
