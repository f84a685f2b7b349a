"""The `localai` command: run the server, describe the build, list models, convert weights."""

from __future__ import annotations

import argparse
import json
import logging
import sys
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
        from localai.gallery import GalleryError, preload

        try:
            for path in preload(settings.preload_models, settings.preload_models_config, settings.models_path):
                logging.getLogger("localai").info("installed gallery model %s", path.name)
        except GalleryError as exc:  # as LocalAI: report it and serve the models we have
            logging.getLogger("localai").error("preloading models failed: %s", exc)
        app.manager.reload_configs()

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
    models = sub.add_parser("models", help="list the models configured in a models folder")
    models.add_argument("--models-path", type=Path, default=Path("models"))
    models.set_defaults(func=cmd_models)
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
