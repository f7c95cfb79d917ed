"""The dashboard's forms: fields and their first-line checks (WTForms via Flask-WTF).

CSRF is checked for every POST before a view runs (`api.dashboard.security`), so these forms do not
check it again. The rules behind the fields (password policy, unique email, key limits) are the
domain's; what fails there is shown on the form's field by the view.
"""

from __future__ import annotations

from typing import Any

from flask_wtf import FlaskForm
from wtforms import EmailField, PasswordField, StringField
from wtforms.validators import DataRequired, Length

from timo_hub.people.passwords import MAX_LENGTH, MIN_LENGTH

_PASSWORD_LENGTH = Length(
    min=MIN_LENGTH,
    max=MAX_LENGTH,
    message=f"Use at least {MIN_LENGTH} characters (and at most {MAX_LENGTH}).",
)


class _Form(FlaskForm):
    class Meta:
        csrf = False  # checked for every POST in `security.check_csrf`

    def fail(self, field: str, message: str) -> None:
        """Show a domain rule's refusal on one of the form's fields (or the form's own errors)."""
        target: Any = getattr(self, field, None)
        if target is None:
            self.form_errors.append(message)
        else:
            target.errors = [*target.errors, message]


class SignUpForm(_Form):
    email = EmailField("Email", validators=[DataRequired(), Length(max=320)])
    password = PasswordField(
        "Password",
        validators=[DataRequired(), _PASSWORD_LENGTH],
        description=f"At least {MIN_LENGTH} characters. A few unrelated words make a good one.",
    )


class SignInForm(_Form):
    email = EmailField("Email", validators=[DataRequired(), Length(max=320)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=MAX_LENGTH)])


class SetPasswordForm(_Form):
    password = PasswordField(
        "New password",
        validators=[DataRequired(), _PASSWORD_LENGTH],
        description=f"At least {MIN_LENGTH} characters.",
    )


class ChangePasswordForm(_Form):
    current_password = PasswordField(
        "Current password", validators=[DataRequired(), Length(max=MAX_LENGTH)]
    )
    password = PasswordField(
        "New password",
        validators=[DataRequired(), _PASSWORD_LENGTH],
        description=f"At least {MIN_LENGTH} characters. Every other session is signed out.",
    )


class NewKeyForm(_Form):
    name = StringField(
        "Key name",
        validators=[DataRequired(), Length(max=100)],
        description="What the key is for, e.g. “CI” or “production server”.",
    )


class ConfirmForm(_Form):
    """A form with no fields: sign out, revoke a key (the token is all it carries)."""
