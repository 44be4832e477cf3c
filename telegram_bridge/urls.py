from django.urls import path

from . import views

app_name = "telegram_bridge"

urlpatterns = [
    path("webhook/", views.webhook, name="webhook"),
]
