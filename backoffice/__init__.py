"""The back office: what operators do around the voice agent, as `flask --app main …` commands.

Service functions here take a unit of work and plain values and return plain data; `backoffice.cli` turns
them into commands and maps the errors below to a message and an exit status. Knows no CX.
"""
