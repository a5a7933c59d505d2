"""`kaizen-operator`: run the operator (all namespaces unless --namespace is given)."""

from __future__ import annotations

import argparse
import sys

import kopf


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kaizen-operator", description=__doc__)
    parser.add_argument("--namespace", "-n", action="append", help="watch only these namespaces")
    parser.add_argument(
        "--liveness", default=None, help="liveness endpoint, e.g. http://0.0.0.0:8080/healthz"
    )
    args = parser.parse_args(argv)
    import kaizen_operator.handlers  # noqa: F401  (registers the handlers)

    kopf.run(
        standalone=True,
        clusterwide=not args.namespace,
        namespaces=args.namespace or (),
        liveness_endpoint=args.liveness,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
