"""``python -m devhost``: serve an Azure Functions Python v2 app locally (see devhost.host)."""
from .host import main

raise SystemExit(main())
