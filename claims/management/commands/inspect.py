from backoffice.cli import JsonCommand
from backoffice.errors import InvalidInput
from claims import selectors
from claims.cli import claim_as_dict


class Command(JsonCommand):
    help = "Show one claim, by ID or by --story and --todolist. Exit 5 if there is none."

    def add_arguments(self, parser):
        parser.add_argument("id", nargs="?", help="The claim id.")
        parser.add_argument("--story")
        parser.add_argument("--todolist")

    def handle(self, *args, **options):
        claim_id, story, todolist = options["id"], options["story"], options["todolist"]
        if claim_id is not None and (story or todolist):
            raise InvalidInput({"id": "give either an ID or --story and --todolist, not both"})
        if claim_id is not None:
            claim = selectors.get_claim(claim_id)
        elif story and todolist:
            claim = selectors.find_claim(story, todolist)
        else:
            raise InvalidInput({"id": "give an ID, or both --story and --todolist"})
        self.write_json(claim_as_dict(claim))
