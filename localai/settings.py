"""Server settings: command-line flags with LocalAI's environment variables as defaults."""

from __future__ import annotations

import argparse
import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path


def _env_bool(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def _list(value: str | None) -> list[str]:
    return [item.strip() for item in (value or "").split(",") if item.strip()]


def is_loopback_host(host: str) -> bool:
    """localhost, 127.0.0.0/8 or ::1 (a name other than localhost is not trusted to be loopback)."""
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class Settings:
    address: str = "127.0.0.1:8080"
    models_path: Path = Path("models")
    threads: int | None = None
    context_size: int | None = None
    parallel: int = 4
    preload_models: str | None = None  # JSON/YAML list of gallery entries, LocalAI's PRELOAD_MODELS
    preload_models_config: Path | None = None  # a YAML file with such a list
    preload: list[str] = field(default_factory=list)  # model names to load at start-up
    api_keys: list[str] = field(default_factory=list)
    api_keys_file: Path | None = None  # one key per line, re-read on SIGHUP
    insecure_public: bool = False  # serve a non-loopback address without API keys
    allowed_hosts: list[str] = field(default_factory=list)  # Host header values accepted (empty: see host_allowed)
    cors_allow_origins: list[str] = field(default_factory=list)  # "*" for any (--cors alone)
    public_metrics: bool = False  # /metrics without a key even when keys are set
    isolate_prompt_cache: bool | None = None  # prefix reuse per API key; None: when keys are configured
    debug: bool = False
    server_threads: int = 16
    upload_limit_mb: float = 25.0
    max_audio_seconds: float = 1800.0
    generated_images_path: Path | None = None
    cors: bool = False
    json_limit_mb: float = 8.0  # largest JSON body
    max_queue: int = 64  # sequences waiting for a slot, per model, before requests get a 429
    request_timeout: float = 600.0  # seconds one request may generate (0: no limit)
    max_request_tokens: int = 262_144  # tokens one request may ask to generate, all choices together
    shutdown_grace: float = 10.0  # seconds in-flight requests get to finish after SIGTERM
    idle_timeout: float = 30.0  # seconds an idle or slow connection is kept open
    max_connections: int = 1000  # open connections at once
    galleries: str | None = None  # LocalAI's GALLERIES: JSON list of {name, url}
    allow_private_urls: bool = False  # gallery requests may fetch from loopback/private networks and files
    gallery_workers: int = 2  # gallery jobs run at once
    max_download_gb: float = 64.0  # largest file one gallery install may download
    responses_store_size: int = 1000  # stored Responses API responses (LRU); 0: none are kept
    cache_ram_mb: float = 2048.0  # host-RAM prompt cache for all models together (0: off)
    prompt_cache_dir: Path | None = None  # where the prompt cache is saved on shutdown and loaded at start
    rpc_workers: list[str] = field(default_factory=list)  # ggml RPC workers for every llama model
    disable_webui: bool = False  # no playground page at / (LocalAI's DISABLE_WEBUI)

    @property
    def images_path(self) -> Path:
        """Where generated images are written and served from."""
        return Path(self.generated_images_path or Path(self.models_path) / "generated-images")

    @property
    def cache_ram_bytes(self) -> int:
        return int(self.cache_ram_mb * 1024 * 1024)

    @property
    def max_download_bytes(self) -> int:
        return int(self.max_download_gb * 1e9)

    @property
    def upload_limit_bytes(self) -> int:
        return int(self.upload_limit_mb * 1024 * 1024)

    @property
    def json_limit_bytes(self) -> int:
        return int(self.json_limit_mb * 1024 * 1024)

    @property
    def is_loopback(self) -> bool:
        """Whether the server listens on a loopback address only."""
        return is_loopback_host(self.host_port[0])

    @property
    def native_log_level(self) -> str:
        """Which native library log lines reach stderr: informational ones too with --debug."""
        return "info" if self.debug else "warn"

    @property
    def host_port(self) -> tuple[str, int]:
        host, _, port = self.address.rpartition(":")
        return (host or "127.0.0.1").strip("[]"), int(port)


def add_arguments(parser: argparse.ArgumentParser, env: dict[str, str] | None = None) -> None:
    """`localai run` flags; each defaults to its LocalAI environment variable."""
    env = os.environ if env is None else env
    parser.add_argument("--address", default=env.get("ADDRESS", "127.0.0.1:8080"),
                        help="host:port to listen on (env ADDRESS; default 127.0.0.1:8080)")
    parser.add_argument("--models-path", type=Path, default=Path(env.get("MODELS_PATH", "models")),
                        help="folder with model YAML files and weights (env MODELS_PATH)")
    parser.add_argument("--threads", type=int, default=int(env["THREADS"]) if env.get("THREADS") else None,
                        help="CPU threads per model (env THREADS; default: all cores)")
    parser.add_argument("--context-size", type=int,
                        default=int(env["CONTEXT_SIZE"]) if env.get("CONTEXT_SIZE") else None,
                        help="default context size per sequence (env CONTEXT_SIZE)")
    parser.add_argument("--parallel", type=int, default=int(env.get("PARALLEL_REQUESTS", "4") or 4),
                        help="sequences decoded together per model (env PARALLEL_REQUESTS; default 4)")
    parser.add_argument("--preload-models", default=env.get("PRELOAD_MODELS"),
                        help="JSON list of gallery models to install at start-up (env PRELOAD_MODELS)")
    parser.add_argument("--preload-models-config", type=Path,
                        default=Path(env["PRELOAD_MODELS_CONFIG"]) if env.get("PRELOAD_MODELS_CONFIG") else None,
                        help="YAML file listing models to install at start-up (env PRELOAD_MODELS_CONFIG)")
    parser.add_argument("--preload", default=env.get("LOCALAI_PRELOAD", ""),
                        help="comma list of configured model names to load before serving (env LOCALAI_PRELOAD)")
    parser.add_argument("--api-keys", default=env.get("API_KEY", ""),
                        help="comma list of accepted API keys; empty = no auth (env API_KEY)")
    parser.add_argument("--api-keys-file", type=Path,
                        default=Path(env["LOCALAI_API_KEYS_FILE"]) if env.get("LOCALAI_API_KEYS_FILE") else None,
                        help="file with one API key per line, re-read on SIGHUP (env LOCALAI_API_KEYS_FILE)")
    parser.add_argument("--insecure-public", action="store_true", default=_env_bool(env.get("LOCALAI_INSECURE_PUBLIC")),
                        help="allow a non-loopback address without API keys (env LOCALAI_INSECURE_PUBLIC)")
    parser.add_argument("--allowed-hosts", default=env.get("LOCALAI_ALLOWED_HOSTS", ""),
                        help="comma list of Host header names accepted (env LOCALAI_ALLOWED_HOSTS; default: loopback "
                             "names when listening on loopback, any otherwise)")
    parser.add_argument("--cors-allow-origins", default=env.get("LOCALAI_CORS_ALLOW_ORIGINS", ""),
                        help="comma list of origins allowed by CORS (env LOCALAI_CORS_ALLOW_ORIGINS; --cors: any)")
    parser.add_argument("--public-metrics", action="store_true", default=_env_bool(env.get("LOCALAI_PUBLIC_METRICS")),
                        help="serve /metrics without an API key (env LOCALAI_PUBLIC_METRICS)")
    parser.add_argument("--isolate-prompt-cache", dest="isolate_prompt_cache", action="store_true",
                        default=None, help="reuse cached prompt prefixes only between requests of one API key "
                                           "(default: on when API keys are configured)")
    parser.add_argument("--shared-prompt-cache", dest="isolate_prompt_cache", action="store_false",
                        help="reuse cached prompt prefixes across API keys")
    parser.add_argument("--debug", action="store_true", default=_env_bool(env.get("DEBUG")),
                        help="verbose logs (env DEBUG)")
    parser.add_argument("--server-threads", type=int, default=int(env.get("LOCALAI_SERVER_THREADS", "16")),
                        help="HTTP worker threads (env LOCALAI_SERVER_THREADS; default 16)")
    parser.add_argument("--upload-limit", type=float, default=float(env.get("UPLOAD_LIMIT", "25")),
                        help="largest upload in MB (env UPLOAD_LIMIT; default 25)")
    parser.add_argument("--max-audio-seconds", type=float, default=float(env.get("LOCALAI_MAX_AUDIO_SECONDS", "1800")),
                        help="longest decoded audio accepted (env LOCALAI_MAX_AUDIO_SECONDS; default 1800)")
    parser.add_argument("--generated-images-path", type=Path,
                        default=Path(env["GENERATED_CONTENT_PATH"]) if env.get("GENERATED_CONTENT_PATH") else None,
                        help="where generated images are written (env GENERATED_CONTENT_PATH)")
    parser.add_argument("--cors", action="store_true", default=_env_bool(env.get("CORS")),
                        help="answer CORS requests from any origin (env CORS); see --cors-allow-origins")
    parser.add_argument("--json-limit", type=float, default=float(env.get("LOCALAI_JSON_LIMIT", "8")),
                        help="largest JSON request body in MB (env LOCALAI_JSON_LIMIT; default 8)")
    parser.add_argument("--max-queue", type=int, default=int(env.get("LOCALAI_MAX_QUEUE", "64")),
                        help="sequences that may wait for a slot per model; more get a 429 (env LOCALAI_MAX_QUEUE; "
                             "default 64)")
    parser.add_argument("--request-timeout", type=float, default=float(env.get("LOCALAI_REQUEST_TIMEOUT", "600")),
                        help="seconds one request may generate, 0 for no limit (env LOCALAI_REQUEST_TIMEOUT; "
                             "default 600)")
    parser.add_argument("--max-request-tokens", type=int,
                        default=int(env.get("LOCALAI_MAX_REQUEST_TOKENS", "262144")),
                        help="tokens one request may ask to generate, all its choices together "
                             "(env LOCALAI_MAX_REQUEST_TOKENS; default 262144)")
    parser.add_argument("--shutdown-grace", type=float, default=float(env.get("LOCALAI_SHUTDOWN_GRACE", "10")),
                        help="seconds in-flight requests get to finish on SIGTERM (env LOCALAI_SHUTDOWN_GRACE; "
                             "default 10)")
    parser.add_argument("--idle-timeout", type=float, default=float(env.get("LOCALAI_IDLE_TIMEOUT", "30")),
                        help="seconds an idle or slow connection stays open (env LOCALAI_IDLE_TIMEOUT; default 30)")
    parser.add_argument("--max-connections", type=int, default=int(env.get("LOCALAI_MAX_CONNECTIONS", "1000")),
                        help="open connections at once (env LOCALAI_MAX_CONNECTIONS; default 1000)")
    parser.add_argument("--responses-store-size", type=int,
                        default=int(env.get("LOCALAI_RESPONSES_STORE_SIZE", "1000")),
                        help="stored responses of the Responses API kept (least recently used go first; 0: none; "
                             "env LOCALAI_RESPONSES_STORE_SIZE; default 1000)")
    parser.add_argument("--cache-ram", type=float, default=float(env.get("LOCALAI_CACHE_RAM", "2048")),
                        help="MiB of host RAM for the prompt cache, all models together; 0 turns it off "
                             "(env LOCALAI_CACHE_RAM; default 2048)")
    parser.add_argument("--prompt-cache-dir", type=Path,
                        default=Path(env["LOCALAI_PROMPT_CACHE_DIR"]) if env.get("LOCALAI_PROMPT_CACHE_DIR") else None,
                        help="save the prompt cache here on shutdown and load it at start-up "
                             "(env LOCALAI_PROMPT_CACHE_DIR)")
    parser.add_argument("--disable-webui", action="store_true",
                        default=_env_bool(env.get("LOCALAI_DISABLE_WEBUI", env.get("DISABLE_WEBUI"))),
                        help="serve no web playground at / (env LOCALAI_DISABLE_WEBUI or LocalAI's DISABLE_WEBUI)")
    parser.add_argument("--rpc-workers", default=env.get("RPC_WORKERS", env.get("LLAMACPP_GRPC_SERVERS", "")),
                        help="ggml RPC workers (`localai worker`) host:port,... that hold layers of every llama "
                             "model (env RPC_WORKERS, or LocalAI's LLAMACPP_GRPC_SERVERS); a model YAML's "
                             "rpc_workers overrides it")
    add_gallery_arguments(parser, env)


def add_gallery_arguments(parser: argparse.ArgumentParser, env: dict[str, str] | None = None) -> None:
    """The flags `localai run` and `localai models` share."""
    env = os.environ if env is None else env
    parser.add_argument("--galleries", default=env.get("GALLERIES"),
                        help='model galleries, LocalAI\'s JSON list [{"name": ..., "url": ...}] (env GALLERIES); '
                             "the built-in gallery `localai` is always there")
    parser.add_argument("--allow-private-urls", action="store_true",
                        default=_env_bool(env.get("ALLOW_PRIVATE_URLS")),
                        help="let /models/apply fetch from loopback and private networks and read local files "
                             "(env ALLOW_PRIVATE_URLS)")
    parser.add_argument("--gallery-workers", type=int, default=int(env.get("LOCALAI_GALLERY_WORKERS", "2")),
                        help="gallery jobs run at once (env LOCALAI_GALLERY_WORKERS; default 2)")
    parser.add_argument("--max-download-size", type=float, default=float(env.get("LOCALAI_MAX_DOWNLOAD_SIZE", "64")),
                        help="largest file a gallery install may download, in GB (env LOCALAI_MAX_DOWNLOAD_SIZE; "
                             "default 64)")


def from_arguments(args: argparse.Namespace) -> Settings:
    return Settings(
        address=args.address,
        models_path=args.models_path,
        threads=args.threads,
        context_size=args.context_size,
        parallel=max(1, args.parallel),
        preload_models=args.preload_models,
        preload_models_config=args.preload_models_config,
        preload=[name.strip() for name in args.preload.split(",") if name.strip()],
        api_keys=_list(args.api_keys),
        api_keys_file=args.api_keys_file,
        insecure_public=args.insecure_public,
        allowed_hosts=_list(args.allowed_hosts),
        cors_allow_origins=_list(args.cors_allow_origins) or (["*"] if args.cors else []),
        public_metrics=args.public_metrics,
        isolate_prompt_cache=args.isolate_prompt_cache,
        debug=args.debug,
        server_threads=args.server_threads,
        upload_limit_mb=args.upload_limit,
        max_audio_seconds=args.max_audio_seconds,
        generated_images_path=args.generated_images_path,
        cors=args.cors or bool(_list(args.cors_allow_origins)),
        json_limit_mb=args.json_limit,
        max_queue=max(1, args.max_queue),
        request_timeout=max(0.0, args.request_timeout),
        max_request_tokens=max(1, args.max_request_tokens),
        shutdown_grace=max(0.0, args.shutdown_grace),
        idle_timeout=max(1.0, args.idle_timeout),
        max_connections=max(16, args.max_connections),
        responses_store_size=max(0, args.responses_store_size),
        cache_ram_mb=max(0.0, args.cache_ram),
        prompt_cache_dir=args.prompt_cache_dir,
        rpc_workers=_list(args.rpc_workers),
        disable_webui=args.disable_webui,
        **gallery_settings(args),
    )


def gallery_settings(args: argparse.Namespace) -> dict:
    return {"galleries": args.galleries, "allow_private_urls": args.allow_private_urls,
            "gallery_workers": max(1, args.gallery_workers), "max_download_gb": max(0.0, args.max_download_size)}
