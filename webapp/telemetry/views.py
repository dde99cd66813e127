from __future__ import annotations

from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from webapp.core import roles
from webapp.telemetry import services
from webapp.telemetry.forms import ScrapeTargetForm
from webapp.telemetry.models import ScrapeTarget


@roles.require_role(roles.ADMIN)
def scrape_target_list(request):
    form = ScrapeTargetForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        target = form.save(commit=False)
        services.save_scrape_target(target, actor=request.user)
        messages.success(
            request, f"Scrape target {target.name} added; first scrape within seconds."
        )
        return redirect("scrape_target_list")
    return render(
        request,
        "telemetry/scrape_targets.html",
        {"targets": ScrapeTarget.objects.all(), "form": form},
    )


@roles.require_role(roles.ADMIN)
def scrape_target_edit(request, target_id: int):
    target = get_object_or_404(ScrapeTarget, pk=target_id)
    form = ScrapeTargetForm(request.POST or None, instance=target)
    if request.method == "POST" and form.is_valid():
        services.save_scrape_target(form.save(commit=False), actor=request.user)
        messages.success(request, f"Scrape target {target.name} saved.")
        return redirect("scrape_target_list")
    return render(request, "telemetry/scrape_target_edit.html", {"target": target, "form": form})


@roles.require_role(roles.ADMIN)
@require_POST
def scrape_target_delete(request, target_id: int):
    target = get_object_or_404(ScrapeTarget, pk=target_id)
    services.delete_scrape_target(target, actor=request.user)
    messages.success(request, f"Scrape target {target.name} deleted.")
    return redirect("scrape_target_list")
