from api.tokens import create_token
from backoffice.cli import JsonCommand


class Command(JsonCommand):
    help = (
        "Create an API token for USERNAME and print its key, once, alone on stdout. Only a hash "
        "is stored: keep the key, it cannot be shown again."
    )

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument(
            "--expiry-hours",
            type=int,
            default=None,
            help="Hours until the token expires (default: API_TOKEN_EXPIRY_HOURS).",
        )

    def handle(self, *args, username, expiry_hours, **options):
        user = self.get_user(username)
        _, key = create_token(
            user, actor=self.actor(label="create_api_token"), expiry_hours=expiry_hours
        )
        self.stdout.write(key, style_func=lambda text: text)
