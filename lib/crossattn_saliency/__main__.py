"""Command line: ``python -m crossattn_saliency explain CLIP [options]`` (see :mod:`.app.clip`) and
``python -m crossattn_saliency heads --model M --audio FOLDER --out heads.json`` (see :mod:`.app.heads`)."""
from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {"explain": "explain one audio clip with a Whisper model (python -m crossattn_saliency explain -h)",
                "heads": "choose alignment heads (word timestamps) of any Whisper "
                         "(python -m crossattn_saliency heads -h)"}
    if not argv or argv[0] not in commands:
        print("usage: python -m crossattn_saliency COMMAND ...\n\ncommands:\n"
              + "\n".join(f"  {c:<10} {h}" for c, h in commands.items()), file=sys.stderr)
        return 2
    if argv[0] == "heads":
        from .app.heads import main as heads_main

        return heads_main(argv[1:])
    from .app.clip import main as explain_main

    return explain_main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
