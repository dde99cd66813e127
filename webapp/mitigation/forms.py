from __future__ import annotations

from pathlib import PurePath

from django import forms

MAX_IMPORT_BYTES = 5 * 1024 * 1024
EXTENSIONS = (".csv", ".json")


class HistoryImportForm(forms.Form):
    file = forms.FileField(
        error_messages={
            "required": "Choose a CSV or JSON file.",
            "empty": "The file is empty.",
            "invalid": "No file was received; check the form's encoding type.",
        }
    )

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if PurePath(upload.name).suffix.lower() not in EXTENSIONS:
            raise forms.ValidationError(
                f"{upload.name!r} is neither .csv nor .json.", code="extension"
            )
        if upload.size > MAX_IMPORT_BYTES:
            raise forms.ValidationError(
                f"The file is {upload.size / 1024 / 1024:.1f} MB; the limit is "
                f"{MAX_IMPORT_BYTES // 1024 // 1024} MB. Split it and import the parts.",
                code="too_large",
            )
        return upload
