from __future__ import annotations

from django.urls import path

from imapcopier.apitokens import views

app_name = "apitokens"

urlpatterns = [
    path("tokens/", views.token_list, name="list"),
    path("tokens/new/", views.token_create, name="create"),
    path("tokens/<int:pk>/revoke/", views.token_revoke, name="revoke"),
]
