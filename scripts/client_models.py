"""Write the client's pydantic models from the service's OpenAPI schema (never by hand).

`python -m scripts.client_models` regenerates client/visionserve_client/models.py;
`--check` exits 1 when the committed file differs from what the service's schema gives
(tests/client runs it, so a changed response schema cannot leave the client behind).
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from app.config import Settings
from app.main import create_app

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "client" / "visionserve_client" / "models.py"
HEADER = (
    '"""Generated from the service\'s OpenAPI schema by scripts/client_models.py; do not edit."""\n'
)


def generate() -> str:
    """The models module's text for the current schema."""
    schema = create_app(Settings()).openapi()
    with tempfile.TemporaryDirectory() as scratch:
        spec, out = Path(scratch) / "openapi.json", Path(scratch) / "models.py"
        spec.write_text(json.dumps(schema, sort_keys=True))
        command = [
            str(Path(sys.executable).parent / "datamodel-codegen"),
            *("--input", str(spec), "--input-file-type", "openapi", "--output", str(out)),
            *("--output-model-type", "pydantic_v2.BaseModel", "--target-python-version", "3.11"),
            "--use-annotated",
            "--field-constraints",
            "--use-standard-collections",
            "--use-union-operator",
            "--disable-timestamp",
            # A newer service may add fields; an older client must still read its answers.
            *("--extra-fields", "ignore"),
            *("--enum-field-as-literal", "all"),
        ]
        subprocess.run(command, check=True, capture_output=True)
        body = out.read_text()
    lines = [line for line in body.splitlines() if not line.startswith("#")]
    return _ruff(HEADER + "\n".join(lines).lstrip("\n") + "\n")


def _ruff(text: str) -> str:
    """The project's own import order and layout (its ruff settings), as CI checks them."""
    ruff = str(Path(sys.executable).parent / "ruff")
    for command in (["check", "--fix-only", "--select", "I,UP,F401"], ["format"]):
        text = subprocess.run(
            [ruff, *command, "--stdin-filename", str(MODELS.relative_to(ROOT)), "-"],
            input=text,
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        ).stdout
    return text


def main() -> int:
    """Write the module, or with --check compare it."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    text = generate()
    if parser.parse_args().check:
        if MODELS.read_text() != text:
            print(f"{MODELS} is stale: run python -m scripts.client_models", file=sys.stderr)
            return 1
        return 0
    MODELS.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
