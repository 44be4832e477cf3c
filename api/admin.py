"""API tokens in the admin: create one for a user and see its key exactly once.

This replaces django-rest-knox's own admin, which passes the new key through the messages
framework (a cookie, by default); here the key is only ever in the one response that creates
it, marked not to be cached.
"""

from django import forms
from django.conf import settings
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.template.response import TemplateResponse
from django.utils.cache import add_never_cache_headers
from knox.models import AuthToken

from backoffice.actors import Actor, Source
from backoffice.errors import InvalidInput

from .models import ApiToken
from .tokens import MAX_EXPIRY_HOURS, create_token


class TokenCreationForm(forms.Form):
    user = forms.ModelChoiceField(
        queryset=get_user_model()._default_manager.filter(is_active=True).order_by("username")
    )
    expiry_hours = forms.IntegerField(
        min_value=1,
        max_value=MAX_EXPIRY_HOURS,
        initial=lambda: settings.API_TOKEN_EXPIRY_HOURS,
        help_text="The token stops working after this many hours.",
    )


# Staff manage tokens as "API tokens" under the REST API; knox's own page would show them apart.
if admin.site.is_registered(AuthToken):
    admin.site.unregister(AuthToken)


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Tokens are listed by their public prefix; revoke one by deleting it."""

    list_display = ["token_key", "user", "created", "expiry"]
    list_select_related = ["user"]
    search_fields = ["token_key", "user__username"]
    ordering = ["-created"]
    readonly_fields = ("token_key", "user", "created", "expiry")
    fields = readonly_fields

    def has_change_permission(self, request, obj=None):
        return False

    def add_view(self, request, form_url="", extra_context=None):
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = TokenCreationForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                token, key = create_token(
                    form.cleaned_data["user"],
                    actor=Actor(source=Source.ADMIN, user=request.user),
                    expiry_hours=form.cleaned_data["expiry_hours"],
                )
            except InvalidInput as invalid:
                form.add_error(None, invalid.message)
            else:
                response = self._render(
                    request, "admin/api/token_created.html", token=token, key=key
                )
                add_never_cache_headers(response)
                return response
        return self._render(request, "admin/api/token_form.html", form=form)

    def _render(self, request, template, **context):
        return TemplateResponse(
            request,
            template,
            {
                **self.admin_site.each_context(request),
                "opts": self.opts,
                "title": "Create API token",
                **context,
            },
        )
