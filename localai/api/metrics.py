"""/metrics: Prometheus text format through ``prometheus_client``, one registry per app.

Families (llama-server's names where it has one, so its dashboards work):

- ``localai_requests_total{route,method,status}``: HTTP requests answered.
- ``localai_request_duration_seconds{route}``: histogram, first byte to last (streams included).
- ``localai_time_to_first_token_seconds{model}``: histogram, from the request reaching the model
  to its first token.
- ``llamacpp:prompt_tokens_total{model}`` and ``llamacpp:tokens_predicted_total{model}``: tokens
  read and generated.
- ``localai_prompt_cache_hits_total{model}`` / ``localai_prompt_cache_tokens_total{model}``:
  requests that reused a cached prefix, and the prompt tokens they did not have to compute.
- ``llamacpp:requests_processing{model}`` (busy slots) and ``llamacpp:requests_deferred{model}``
  (sequences waiting for one), ``localai_models_loaded``: read from the engines at scrape time.
- The host-RAM prompt cache, per model, also at scrape time: ``localai_prompt_cache_bytes``,
  ``localai_prompt_cache_cached_tokens``, ``localai_prompt_cache_limit_bytes`` (all models
  together), ``localai_prompt_cache_restores_total`` and ``localai_prompt_cache_restored_tokens_total``.
"""

from __future__ import annotations

from typing import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from localai.capabilities import Finished

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60)


class _EngineGauges:
    """Gauges read from the loaded engines when Prometheus scrapes."""

    def __init__(self, engines: Callable[[], Iterable[tuple[str, object]]]) -> None:
        self.engines = engines

    def collect(self):
        busy = GaugeMetricFamily("llamacpp:requests_processing", "Sequences being generated (busy slots)",
                                 labels=["model"])
        deferred = GaugeMetricFamily("llamacpp:requests_deferred", "Sequences waiting for a slot", labels=["model"])
        cache_bytes = GaugeMetricFamily("localai_prompt_cache_bytes", "Bytes of KV held in the host prompt cache",
                                        labels=["model"])
        cache_tokens = GaugeMetricFamily("localai_prompt_cache_cached_tokens", "Tokens held in the host prompt cache",
                                         labels=["model"])
        restores = CounterMetricFamily("localai_prompt_cache_restores", "Prefixes restored from the host prompt cache",
                                       labels=["model"])
        restored = CounterMetricFamily("localai_prompt_cache_restored_tokens", "Prompt tokens restored from the "
                                       "host prompt cache instead of computed", labels=["model"])
        limit = None
        loaded = 0
        for name, engine in self.engines():
            loaded += 1
            status = getattr(engine, "status", None)
            if status is None:
                continue
            state = status()
            if "active_sequences" in state:
                busy.add_metric([name], state["active_sequences"])
                deferred.add_metric([name], state.get("waiting", 0))
            cache = state.get("prompt_cache")
            if cache:
                cache_bytes.add_metric([name], cache["bytes"])
                cache_tokens.add_metric([name], cache["tokens"])
                restores.add_metric([name], cache["restores"])
                restored.add_metric([name], cache["restored_tokens"])
                limit = cache["limit_bytes"]
        yield busy
        yield deferred
        yield from (cache_bytes, cache_tokens, restores, restored)
        if limit is not None:
            yield GaugeMetricFamily("localai_prompt_cache_limit_bytes", "The host prompt cache's limit (--cache-ram)",
                                    value=limit)
        yield GaugeMetricFamily("localai_models_loaded", "Models loaded in memory", value=loaded)


class Metrics:
    def __init__(self, engines: Callable[[], Iterable[tuple[str, object]]]) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("localai_requests", "HTTP requests answered", ["route", "method", "status"],
                                registry=r)
        self.duration = Histogram("localai_request_duration_seconds", "Time to answer a request, streams included",
                                  ["route"], buckets=LATENCY_BUCKETS, registry=r)
        self.ttft = Histogram("localai_time_to_first_token_seconds", "Time from a request reaching the model to its "
                              "first token", ["model"], buckets=TTFT_BUCKETS, registry=r)
        self.prompt_tokens = Counter("llamacpp:prompt_tokens", "Prompt tokens read", ["model"], registry=r)
        self.predicted = Counter("llamacpp:tokens_predicted", "Tokens generated", ["model"], registry=r)
        self.cache_hits = Counter("localai_prompt_cache_hits", "Requests that reused a cached prompt prefix",
                                  ["model"], registry=r)
        self.cache_tokens = Counter("localai_prompt_cache_tokens", "Prompt tokens reused from a cache", ["model"],
                                    registry=r)
        r.register(_EngineGauges(engines))

    def request_done(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.duration.labels(route).observe(seconds)

    def generation_done(self, model: str, finished: Iterable[Finished], n: int) -> None:
        """Count a text request's tokens: each prompt once (the first of its n choices), every choice's output."""
        for i, f in enumerate(finished):
            if i % n == 0:
                self.prompt_tokens.labels(model).inc(f.prompt_tokens)
                if f.cached_tokens:
                    self.cache_hits.labels(model).inc()
                    self.cache_tokens.labels(model).inc(f.cached_tokens)
            self.predicted.labels(model).inc(f.completion_tokens)
            if f.first_token_seconds is not None:
                self.ttft.labels(model).observe(f.first_token_seconds)

    def exposition(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
