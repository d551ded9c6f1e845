"""The one command line: ``herald <service> [options]``. Each service is imported only when chosen."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import sys
from typing import Any

from herald_common.settings import CHANNELS, LANES, load
from herald_common.topics import DEAD_LETTER_SERVICES

# The long-running services and the settings class each builds: the one list of Herald's services (the
# chart checks derive the deployments and their least-privilege environment from it).
SERVICE_SETTINGS: dict[str, str] = {
    "gateway": "herald_gateway.settings:GatewaySettings",
    "router": "herald_router.settings:RouterSettings",
    "sender": "herald_sender.settings:SenderSettings",
    "tracker": "herald_tracker.settings:TrackerSettings",
    "scheduler": "herald_scheduler.settings:SchedulerSettings",
    "webhooks": "herald_webhooks.settings:WebhooksSettings",
    "campaigns": "herald_campaigns.settings:CampaignsSettings",
}


def settings_class(service: str) -> Any:
    module, name = SERVICE_SETTINGS[service].split(":")
    return getattr(importlib.import_module(module), name)


def _overrides(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def cmd_gateway(args: argparse.Namespace) -> None:
    from herald_common.service import run_service
    from herald_gateway.main import serve

    settings = load(settings_class("gateway"))
    run_service("gateway", settings, lambda lc: serve(settings, lc))


def cmd_router(args: argparse.Namespace) -> None:
    from herald_common.service import run_service
    from herald_router.main import serve

    settings = load(settings_class("router"), **_overrides(router_lane=args.lane))
    run_service(f"router-{settings.router_lane}", settings, lambda lc: serve(settings, lc))


def cmd_sender(args: argparse.Namespace) -> None:
    from herald_common.service import run_service
    from herald_sender.main import serve

    settings = load(
        settings_class("sender"), **_overrides(sender_channel=args.channel, sender_lane=args.lane)
    )
    run_service(
        f"sender-{settings.sender_channel}-{settings.sender_lane}", settings, lambda lc: serve(settings, lc)
    )


def cmd_tracker(args: argparse.Namespace) -> None:
    from herald_common.service import run_service
    from herald_tracker.main import serve

    settings = load(settings_class("tracker"))
    run_service("tracker", settings, lambda lc: serve(settings, lc))


def cmd_scheduler(args: argparse.Namespace) -> None:
    from herald_common.service import run_service
    from herald_scheduler.main import serve

    settings = load(settings_class("scheduler"))
    run_service("scheduler", settings, lambda lc: serve(settings, lc))


def cmd_webhooks(args: argparse.Namespace) -> None:
    from herald_common.service import run_service
    from herald_webhooks.main import serve

    settings = load(settings_class("webhooks"))
    run_service("webhooks", settings, lambda lc: serve(settings, lc))


def cmd_campaigns(args: argparse.Namespace) -> None:
    if args.action == "watch":
        from herald_cli.watch import watch

        if not args.campaign_id or not args.api_key:
            raise SystemExit("herald campaigns watch: give a campaign id and --api-key")
        sys.exit(asyncio.run(watch(args.url, args.api_key, args.campaign_id, args.interval)))
    from herald_campaigns.main import serve
    from herald_common.service import run_service

    settings = load(settings_class("campaigns"))
    run_service("campaigns", settings, lambda lc: serve(settings, lc))


def cmd_dlq(args: argparse.Namespace) -> None:
    from herald_common.dlq import run_cli
    from herald_common.settings import CommonSettings

    if args.action == "replay" and not (args.delivery_id or args.all):
        raise SystemExit("herald dlq replay: give --delivery-id ID or --all")
    services = args.service or list(DEAD_LETTER_SERVICES)
    sys.exit(asyncio.run(run_cli(load(CommonSettings), args.action, args.delivery_id, services)))


def cmd_topics(args: argparse.Namespace) -> None:
    from herald_common.kafka import create_topics
    from herald_common.kafka.security import client_options
    from herald_common.settings import CommonSettings
    from herald_common.topics import Topics

    settings = load(CommonSettings)
    created = asyncio.run(
        create_topics(
            settings.kafka_bootstrap,
            Topics(settings.kafka_topic_prefix).all(),
            args.partitions,
            replication_factor=args.replication_factor,
            client=client_options(settings),
        )
    )
    print(f"created {len(created)} topic(s)" + (": " + ", ".join(created) if created else ""))


def cmd_dev(args: argparse.Namespace) -> None:
    from herald_dev.launcher import main as dev_main

    dev_main(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="herald", description="Herald notification platform")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("gateway", help="public HTTP API").set_defaults(func=cmd_gateway)
    p = sub.add_parser("router", help="requests → per-channel deliveries")
    p.add_argument("--lane", choices=LANES)
    p.set_defaults(func=cmd_router)
    p = sub.add_parser("sender", help="deliveries → provider")
    p.add_argument("--channel", choices=CHANNELS)
    p.add_argument("--lane", choices=LANES)
    p.set_defaults(func=cmd_sender)
    sub.add_parser("tracker", help="status events → notification status").set_defaults(func=cmd_tracker)
    sub.add_parser("scheduler", help="releases delayed work (retries) when due").set_defaults(
        func=cmd_scheduler
    )
    sub.add_parser("webhooks", help="status events → signed tenant webhooks").set_defaults(func=cmd_webhooks)
    p = sub.add_parser("campaigns", help="fans campaigns out; `campaigns watch ID` shows one's progress")
    p.add_argument("action", nargs="?", choices=["watch"], help="watch: a live progress bar of one campaign")
    p.add_argument("campaign_id", nargs="?")
    p.add_argument("--url", default="http://127.0.0.1:8080", help="the gateway's base URL")
    p.add_argument("--api-key", help="the tenant's API key")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between refreshes")
    p.set_defaults(func=cmd_campaigns)
    p = sub.add_parser("dlq", help="dead letters of every service: list them as JSON lines, or replay them")
    p.add_argument("action", choices=["list", "replay"])
    p.add_argument(
        "--service",
        action="append",
        choices=DEAD_LETTER_SERVICES,
        help="only this service's dead-letter topic (repeatable; default: every service)",
    )
    which = p.add_mutually_exclusive_group()
    which.add_argument("--delivery-id", help="replay this delivery's dead letter")
    which.add_argument(
        "--all", action="store_true", help="replay every dead letter not replayed yet (of --service)"
    )
    p.set_defaults(func=cmd_dlq)
    p = sub.add_parser("topics", help="create Herald's Kafka topics")
    p.add_argument("action", choices=["create"])
    p.add_argument("--partitions", type=int, default=12)
    p.add_argument(
        "--replication-factor", type=int, default=1, help="copies of each partition (3 in production)"
    )
    p.set_defaults(func=cmd_topics)
    p = sub.add_parser("dev", help="the whole platform locally on embedded defaults")
    p.add_argument("--dir", default="var/dev", help="where the outbox, logs and data live")
    p.add_argument("--no-seed", action="store_true", help="do not create the demo tenant")
    p.set_defaults(func=cmd_dev)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main(sys.argv[1:])
