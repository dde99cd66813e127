from __future__ import annotations

from django import forms

from webapp.dashboards.charts import UNITS
from webapp.dashboards.models import Dashboard
from webapp.dashboards.services import PANEL_TYPES
from webapp.telemetry.store import AGGREGATIONS


class DashboardForm(forms.Form):
    name = forms.CharField(max_length=100)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    variable = forms.ChoiceField(choices=Dashboard.VARIABLES, required=False)


class PanelForm(forms.Form):
    title = forms.CharField(max_length=100, required=False)
    query = forms.CharField(
        max_length=500, required=False, widget=forms.TextInput(attrs={"size": 50})
    )
    agg = forms.ChoiceField(choices=[(a, a) for a in AGGREGATIONS], initial="avg")
    type = forms.ChoiceField(choices=[(t, t) for t in PANEL_TYPES], initial="line")
    unit = forms.ChoiceField(choices=[(u, u or "none") for u in UNITS], required=False)


PanelFormSet = forms.formset_factory(PanelForm, extra=1, max_num=24)


class NodeCapacityForm(forms.Form):
    """What the interference model needs to know about a node that is not a known hardware
    generation. Empty leaves a value unknown (or to the generation's figure)."""

    cpu_cores = forms.IntegerField(label="CPU cores", min_value=1, max_value=4096, required=False)
    memory_gb = forms.FloatField(
        label="Memory (GB)", min_value=0.001, max_value=1e6, required=False
    )
    llc_mb = forms.FloatField(
        label="Last-level cache (MB)", min_value=0.001, max_value=1e5, required=False
    )
    membw_gbps = forms.FloatField(
        label="Memory bandwidth (GB/s)", min_value=0.001, max_value=1e5, required=False
    )
    net_gbit = forms.FloatField(
        label="Network (Gbit/s)", min_value=0.001, max_value=1e5, required=False
    )
    disk_mbps = forms.FloatField(
        label="Disk (MB/s)", min_value=0.001, max_value=1e7, required=False
    )
