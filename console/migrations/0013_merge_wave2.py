# Joins the migrations of features built side by side (templates, code interpreter, SSH,
# warm pools): each depends on the one before them, none on another.
from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("console", "0012_code_interpreter"),
        ("console", "0012_ssh"),
        ("console", "0012_templates"),
    ]

    operations: list[migrations.operations.base.Operation] = []
