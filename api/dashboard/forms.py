"""The dashboard's forms: fields and their first-line checks (WTForms via Flask-WTF).

CSRF is checked for every POST before a view runs (`api.dashboard.security`), so these forms do not
check it again. The rules behind the fields (password policy, unique email, key limits) are the
domain's; what fails there is shown on the form's field by the view.
"""

from __future__ import annotations

from typing import Any

from flask_wtf import FlaskForm
from wtforms import EmailField, PasswordField, SelectMultipleField, StringField, URLField
from wtforms.validators import DataRequired, Length

from timo_hub.accounts.service import MAX_ALERT_THRESHOLDS
from timo_hub.people.passwords import MAX_LENGTH, MIN_LENGTH
from timo_hub.webhooks import endpoints, event_types

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


# What each event is, in the page's words (the checkboxes of a new webhook endpoint).
EVENT_WORDS = {
    event_types.THRESHOLD_REACHED: "This month's calls reached one of your alert thresholds.",
    event_types.EXHAUSTED: "The quota is used up: the month's first call was refused.",
    event_types.EXHAUSTION_PROJECTED: "The forecast says the quota will run out this month.",
    event_types.KEY_CREATED: "An API key was created.",
    event_types.KEY_REVOKED: "An API key was revoked.",
}


class WebhookForm(_Form):
    url = URLField(
        "Endpoint URL",
        validators=[
            DataRequired(message="Enter the URL events are to be sent to."),
            Length(max=2000, message="A URL is at most 2,000 characters."),
        ],
        description="Where to POST events: https, on a public address.",
    )
    # One checkbox per `EVENT_WORDS` entry (the page draws them). The domain checks the events
    # (known, at least one) and says what is wrong in its words.
    events = SelectMultipleField(
        "Events to send",
        default=[event_types.THRESHOLD_REACHED, event_types.EXHAUSTED],
        validate_choice=False,
    )
    description = StringField(
        "Description (optional)",
        validators=[
            Length(
                max=endpoints.MAX_DESCRIPTION,
                message=f"A description is at most {endpoints.MAX_DESCRIPTION} characters.",
            )
        ],
        description="What it is for, e.g. “billing alerts to Slack”.",
    )


class ThresholdsForm(_Form):
    thresholds = StringField(
        "Alert thresholds (% of the monthly quota)",
        validators=[Length(max=100, message="That is longer than any ten percentages.")],
        description=(
            f"Comma-separated whole percentages from 1 to 100, at most "
            f"{MAX_ALERT_THRESHOLDS}, e.g. “50, 80, 100”. Empty: none."
        ),
    )


class ConfirmForm(_Form):
    """A form with no fields: sign out, revoke a key (the token is all it carries)."""
