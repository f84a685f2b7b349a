"""The sd-ncnn pipeline through its bindings, on the tiny random-weight asset set, against numpy.

Every stage is checked against an independent numpy computation (tests/sd_reference.py): the CLIP
tokenizer against OpenAI's merges list, the sampler arithmetic against k-diffusion's formulas,
the text encoder / UNet / decoder against numpy forward passes of the weights written, and a
whole generation against a pure-numpy pipeline.
"""

from __future__ import annotations

import os
import shutil
import threading

import numpy as np
import pytest

from localai import sdassets
from tests import sd_reference as ref

pytestmark = pytest.mark.stablediffusion

BOS, EOS, COMMA = 49406, 49407, 267
CAT, DOG = 2368, 1929


@pytest.fixture(scope="module")
def sd():
    from localai.bindings import sd

    return sd


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, bpe_gz):
    folder = tmp_path_factory.mktemp("sd-tiny")
    weights = sdassets.write_tiny_assets(folder, seed=0, bpe_gz=bpe_gz)
    return folder, weights


# One thread: the tiny nets gain nothing from more, and numpy's OpenBLAS threads (the reference
# runs in this process) and ncnn's spinning OpenMP threads would fight over the cores.
@pytest.fixture(scope="module")
def pipeline(sd, tiny, tmp_path_factory):
    with sd.Pipeline(tiny[0], tmp_path_factory.mktemp("sd-cache"), threads=1) as pipe:
        yield pipe


@pytest.fixture(scope="module")
def tokenizer(sd, tiny):
    with sd.Tokenizer(tiny[0] / "vocab.txt") as tok:
        yield tok


@pytest.fixture(scope="module")
def clip_bpe(bpe_gz):
    return ref.ClipBPE(bpe_gz)


def chunk(tokens: list[int]) -> list[int]:
    return [BOS, *tokens, *[EOS] * (75 - len(tokens)), EOS]


# ---- tokenizer -------------------------------------------------------------------------------

def test_golden_token_ids(tokenizer):
    # CLIP's well-known ids (the Hugging Face CLIPTokenizer documentation examples)
    ids, weights = tokenizer.tokenize("a photo of a cat")
    assert ids == chunk([320, 1125, 539, 320, 2368])
    assert weights == [1.0] * 77
    assert tokenizer.tokenize("Hello, World!")[0] == chunk([3306, 267, 1002, 256])
    # the reference looked capitalised words up whole and got id 0 ("!"); CLIP lower-cases
    assert tokenizer.tokenize("A PHOTO of a Cat")[0] == chunk([320, 1125, 539, 320, 2368])


def test_empty_prompt_is_one_chunk_of_padding(tokenizer):
    assert tokenizer.tokenize("") == (chunk([]), [1.0] * 77)


def test_bpe_matches_openai_merges(tokenizer, clip_bpe, bpe_gz):
    rng = np.random.default_rng(0)
    vocab = sdassets.clip_vocab(bpe_gz)
    syntax = set("()[]:\\")  # prompt-attention syntax, not text
    words = [vocab[i][:-4] for i in rng.choice(np.arange(512, 49406), 600, replace=False)
             if vocab[i].endswith("</w>") and vocab[i][:-4].isascii() and not syntax & set(vocab[i])]
    words += ["".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz"), rng.integers(3, 14))) for _ in range(300)]
    words += ["masterpiece, best quality, ultra-detailed 8k photo", "it's a dog's life; isn't it?",
              "an astronaut riding a horse on mars", "x" * 40, "c++ & rust 100% <|endoftext|> ok"]
    for text in words:
        expected = clip_bpe.encode(text)[:75]
        assert tokenizer.tokenize(text)[0][:77] == chunk(expected), text


def _segments(tokenizer_ref, parts: list[tuple[str, float]]) -> tuple[list[int], list[float]]:
    ids, weights = [], []
    for text, weight in parts:
        tokens = tokenizer_ref.encode(text)
        ids += tokens
        weights += [weight] * len(tokens)
    return ids, weights


@pytest.mark.parametrize("prompt, parts", [
    # the examples of A1111's parse_prompt_attention docstring
    ("normal text", [("normal text", 1.0)]),
    ("an (important) word", [("an ", 1.0), ("important", 1.1), (" word", 1.0)]),
    ("(unbalanced", [("unbalanced", 1.1)]),
    (r"\(literal\]", [("(literal]", 1.0)]),
    ("(unnecessary)(parens)", [("unnecessaryparens", 1.1)]),
    ("a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
     [("a ", 1.0), ("house", 1.573), (" ", 1.1), ("on", 1.0), (" a ", 1.1), ("hill", 0.55), (", sun, ", 1.1),
      ("sky", 1.4641), (".", 1.1)]),
    # unmatched closers and a weight without an opener stay text
    ("cat) dog] :1.5)", [("cat) dog] :1.5)", 1.0)]),
    ("[[cat]]", [("cat", 1 / 1.21)]),
])
def test_attention_weights(tokenizer, clip_bpe, prompt, parts):
    ids, weights = tokenizer.tokenize(prompt)
    expected_ids, expected_weights = _segments(clip_bpe, parts)
    n = len(expected_ids)
    assert ids == chunk(expected_ids)
    np.testing.assert_allclose(weights[1:1 + n], expected_weights, rtol=1e-6)
    assert weights[0] == weights[1 + n] == weights[-1] == 1.0


def test_long_prompts_span_chunks(tokenizer):
    ids, weights = tokenizer.tokenize(" ".join(["cat"] * 100))
    assert ids == chunk([CAT] * 75) + chunk([CAT] * 25)
    assert len(weights) == 154


def test_comma_backtracking_keeps_a_phrase_together(tokenizer):
    # 70 words, a comma, then 10 more: the chunk fills at 75 with its last comma 5 tokens back,
    # so the 4 words after the comma move to the next chunk (A1111's comma_padding_backtrack 20)
    ids, _ = tokenizer.tokenize(" ".join(["cat"] * 70) + ", " + " ".join(["dog"] * 10))
    assert ids == chunk([CAT] * 70 + [COMMA]) + chunk([DOG] * 10)
    # a comma further back than 20 tokens does not move anything
    ids, _ = tokenizer.tokenize(" ".join(["cat"] * 40) + ", " + " ".join(["dog"] * 40))
    assert ids == chunk([CAT] * 40 + [COMMA] + [DOG] * 34) + chunk([DOG] * 6)


def test_break_starts_a_new_chunk(tokenizer):
    ids, _ = tokenizer.tokenize("cat BREAK dog")
    assert ids == chunk([CAT]) + chunk([DOG])
    assert tokenizer.tokenize("BREAKFAST")[0] != chunk([])  # only the word on its own


# ---- sampler arithmetic -----------------------------------------------------------------------

@pytest.mark.parametrize("steps", [1, 2, 15, 50])
def test_sigma_schedule(sd, steps):
    log_sigmas = sdassets.log_sigmas()
    sigmas = sd.sigmas(log_sigmas, steps)
    np.testing.assert_allclose(sigmas, ref.sigmas(log_sigmas, steps), rtol=2e-6)
    assert sigmas[-1] == 0 and np.all(np.diff(sigmas) < 0)
    if steps == 15:  # the reference's published schedule
        np.testing.assert_allclose(sigmas[[0, 1, 2, 13, 14]], [14.61, 9.68, 6.68, 0.278, 0.0292], rtol=3e-3)


def test_sigma_to_t(sd):
    log_sigmas = sdassets.log_sigmas()
    for sigma in [0.01, 0.0292, 0.1, 1.0, 3.7, 14.6, 20.0]:
        assert sd.sigma_to_t(log_sigmas, sigma) == pytest.approx(ref.sigma_to_t(log_sigmas, sigma), abs=2e-3)
    # the schedule's own sigmas map back to their timesteps
    for steps in (15, 30):
        sigmas = sd.sigmas(log_sigmas, steps)[:-1]
        ts = [sd.sigma_to_t(log_sigmas, s) for s in sigmas]
        np.testing.assert_allclose(ts, np.linspace(999, 0, steps), atol=2e-2)


def test_noise_is_reproducible_per_seed_and_step(sd):
    a = sd.noise(42, 3, (4, 32, 32))
    np.testing.assert_array_equal(a, sd.noise(42, 3, (4, 32, 32)))
    np.testing.assert_allclose(a.ravel(), ref.noise(42, 3, a.size), rtol=1e-6, atol=1e-6)
    assert not np.array_equal(a, sd.noise(42, 4, (4, 32, 32)))
    assert not np.array_equal(a, sd.noise(43, 3, (4, 32, 32)))
    # the full 64-bit seed counts (the reference used seed % 1000)
    assert not np.array_equal(sd.noise(5, 0, (64,)), sd.noise(1005, 0, (64,)))
    assert not np.array_equal(sd.noise(5, 0, (64,)), sd.noise(5 + (1 << 40), 0, (64,)))
    big = sd.noise(7, 0, (200_001,))
    assert abs(big.mean()) < 0.01 and abs(big.std() - 1) < 0.01
    # a prefix of a stream does not depend on its length
    np.testing.assert_array_equal(sd.noise(9, 1, (7,)), sd.noise(9, 1, (8,))[:7])


def test_guided_euler_ancestral_step(sd):
    rng = np.random.default_rng(3)
    x, cond, uncond, noise = (rng.standard_normal((4, 8, 8)).astype(np.float32) for _ in range(4))
    for guidance, sigma, sigma_next in [(7.5, 14.6, 9.68), (1.0, 2.0, 1.5), (3.0, 0.278, 0.0292), (7.5, 0.0292, 0.0)]:
        got = sd.euler_ancestral_step(x, cond, uncond, guidance, sigma, sigma_next,
                                      noise if sigma_next > 0 else None)
        want = ref.euler_ancestral(x.astype(np.float64), cond, uncond, guidance, sigma, sigma_next, noise)
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5)
    # the last step (to sigma 0) returns the guided denoised estimate itself
    last = sd.euler_ancestral_step(x, cond, uncond, 7.5, 0.0292, 0.0, None)
    np.testing.assert_allclose(last, uncond + 7.5 * (cond - uncond), rtol=1e-5, atol=1e-5)


# ---- networks against numpy --------------------------------------------------------------------

def test_text_encoder(pipeline, tokenizer, tiny):
    weights = tiny[1]
    for prompt in ["a (photo:1.3) of a [cat], masterpiece", "", " ".join(["dog"] * 80)]:
        context = pipeline.encode_prompt(prompt)
        ids, multipliers = tokenizer.tokenize(prompt)
        expected = np.concatenate([ref.clip_chunk(weights.clip, np.array(ids[i:i + 77]), multipliers[i:i + 77])
                                   for i in range(0, len(ids), 77)])
        assert context.shape == expected.shape == (len(ids), 768)
        np.testing.assert_allclose(context, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("width, height", [(256, 256), (512, 512), (384, 256), (256, 320)])
@pytest.mark.parametrize("mode", [0, 1])
def test_unet(pipeline, tiny, width, height, mode):
    """256/512 use the shipped -opt params, other sizes the rewritten base param: each must give
    the numpy result, which a param for another size cannot (see test_wrong_size_param_is_caught)."""
    rng = np.random.default_rng(width * 7 + height)
    context = pipeline.encode_prompt("a red bicycle")
    log_sigmas = pipeline.log_sigmas()
    for sigma in (14.6, 0.8):
        x = (rng.standard_normal((4, height // 8, width // 8)) * sigma).astype(np.float32)
        got = pipeline.denoise(x, sigma, context, mode=mode)
        want = ref.unet(tiny[1].unet, x, ref.sigma_to_t(log_sigmas, sigma), context,
                        1 / np.sqrt(sigma ** 2 + 1), -sigma)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * sigma)


@pytest.mark.parametrize("width, height", [(256, 256), (512, 512), (384, 256)])
def test_decoder(pipeline, tiny, width, height):
    latent = (np.random.default_rng(width + height).standard_normal((4, height // 8, width // 8)) * 0.6)
    latent = latent.astype(np.float32)
    image = pipeline.decode(latent)
    want = ref.to_pixels(ref.decoder(tiny[1].decoder, latent.astype(np.float64) / np.float32(0.18215)))
    assert image.shape == (height, width, 3)
    diff = np.abs(image.astype(int) - want)
    assert diff.max() <= 1 and (diff > 0).mean() < 0.01  # rounding ties only
    assert 20 < image.std() and image.min() < 64 and image.max() > 192  # not a saturated test image


def test_wrong_size_param_is_caught(sd, tiny, tmp_path):
    """ncnn does not check Reshape element counts: a 256 param fed a 512 latent reads garbage.
    The numpy comparison above is what notices; this is its negative control."""
    folder = tmp_path / "assets"
    shutil.copytree(tiny[0], folder)
    shutil.copy(folder / "UNetModel-256-256-MHA-fp16-opt.param", folder / "UNetModel-512-512-MHA-fp16-opt.param")
    with sd.Pipeline(folder, tmp_path / "cache", threads=1) as pipe:
        context = pipe.encode_prompt("a red bicycle")
        x = np.random.default_rng(0).standard_normal((4, 64, 64)).astype(np.float32)
        want = ref.unet(tiny[1].unet, x, ref.sigma_to_t(pipe.log_sigmas(), 1.0), context, 1 / np.sqrt(2), -1.0)
        try:
            got = pipe.denoise(x, 1.0, context)
        except Exception as exc:  # the shape check may catch it first
            assert "expected 64x64x4" in str(exc)
        else:
            assert np.abs(got - want).max() > 1e-2


# ---- whole generations -------------------------------------------------------------------------

def numpy_generation(weights, tokenizer, log_sigmas, prompt, negative, width, height, steps, seed, guidance=7.5):
    """The whole pipeline in numpy (noise from the documented generator)."""
    def encode(text):
        ids, multipliers = tokenizer.tokenize(text)
        return np.concatenate([ref.clip_chunk(weights.clip, np.array(ids[i:i + 77]), multipliers[i:i + 77])
                               for i in range(0, len(ids), 77)])

    cond, uncond = encode(prompt), encode(negative)
    shape = (4, height // 8, width // 8)
    sigmas = ref.sigmas(log_sigmas, steps).astype(np.float32).astype(np.float64)
    x = ref.noise(seed, 0, int(np.prod(shape))).reshape(shape).astype(np.float64) * sigmas[0]
    for i in range(steps):
        s = sigmas[i]
        t = ref.sigma_to_t(log_sigmas, s)
        c = ref.unet(weights.unet, x, t, cond, 1 / np.sqrt(s * s + 1), -s)
        u = ref.unet(weights.unet, x, t, uncond, 1 / np.sqrt(s * s + 1), -s)
        noise = ref.noise(seed, i + 1, x.size).reshape(shape) if sigmas[i + 1] > 0 else 0
        x = ref.euler_ancestral(x, c, u, guidance, s, sigmas[i + 1], noise)
    return ref.to_pixels(ref.decoder(weights.decoder, x / 0.18215))


@pytest.mark.parametrize("width, height, steps", [(256, 256, 4), (384, 256, 2)])
def test_generation_matches_numpy_pipeline(pipeline, tokenizer, tiny, width, height, steps):
    image, timings = pipeline.generate("a castle on a hill, (sunset:1.2)", "blurry, low quality",
                                       width=width, height=height, steps=steps, seed=1234)
    want = numpy_generation(tiny[1], tokenizer, pipeline.log_sigmas(), "a castle on a hill, (sunset:1.2)",
                            "blurry, low quality", width, height, steps, 1234)
    diff = np.abs(image.astype(int) - want)
    assert diff.max() <= 2 and diff.mean() < 0.05, (diff.max(), diff.mean())
    assert timings.unet_runs == 2 * steps


def test_generation_composes_the_stages_exactly(sd, pipeline):
    """sd_generate == the documented loop over the exposed stages, bit for bit."""
    steps, seed, shape = 3, 99, (4, 32, 32)
    image, _ = pipeline.generate("cat", "dog", width=256, height=256, steps=steps, seed=seed, guidance=5.0)
    cond, uncond = pipeline.encode_prompt("cat"), pipeline.encode_prompt("dog")
    sigmas = sd.sigmas(pipeline.log_sigmas(), steps)
    x = sd.noise(seed, 0, shape) * sigmas[0]
    for i in range(steps):
        c = pipeline.denoise(x, sigmas[i], cond)
        u = pipeline.denoise(x, sigmas[i], uncond)
        noise = sd.noise(seed, i + 1, shape) if sigmas[i + 1] > 0 else None
        x = sd.euler_ancestral_step(x, c, u, 5.0, sigmas[i], sigmas[i + 1], noise)
    np.testing.assert_array_equal(image, pipeline.decode(x))


def test_seed_reproduces_the_image(pipeline):
    args = dict(width=256, height=256, steps=3)
    first, _ = pipeline.generate("a lighthouse", "fog", seed=7, **args)
    again, _ = pipeline.generate("a lighthouse", "fog", seed=7, **args)
    other, _ = pipeline.generate("a lighthouse", "fog", seed=8, **args)
    far, _ = pipeline.generate("a lighthouse", "fog", seed=7 + 1000, **args)  # not seed % 1000
    assert first.tobytes() == again.tobytes()
    assert np.abs(first.astype(int) - other).mean() > 5
    assert np.abs(first.astype(int) - far).mean() > 5
    prompt_changed, _ = pipeline.generate("a lighthouse at night", "fog", seed=7, **args)
    assert not np.array_equal(first, prompt_changed)


def test_256_and_512_paths_are_distinct(pipeline):
    small, _ = pipeline.generate("a lighthouse", "", width=256, height=256, steps=2, seed=5)
    large, _ = pipeline.generate("a lighthouse", "", width=512, height=512, steps=2, seed=5)
    assert small.shape == (256, 256, 3) and large.shape == (512, 512, 3)
    # different latents (noise of another shape) and nets: not a resampled copy of each other
    assert np.abs(large[::2, ::2].astype(int) - small).mean() > 5


def test_one_step_works(pipeline):
    image, timings = pipeline.generate("a tree", "", width=256, height=256, steps=1, seed=1)
    assert image.shape == (256, 256, 3) and timings.unet_runs == 2


def test_concurrent_calls_are_serialised(pipeline):
    expected = {seed: pipeline.generate("a boat", "", width=256, height=256, steps=2, seed=seed)[0]
                for seed in (1, 2, 3)}
    results = {}

    def run(seed):
        results[seed] = pipeline.generate("a boat", "", width=256, height=256, steps=2, seed=seed)[0]

    threads = [threading.Thread(target=run, args=(seed,)) for seed in (1, 2, 3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for seed in (1, 2, 3):
        np.testing.assert_array_equal(results[seed], expected[seed])


# ---- files, sizes, errors ----------------------------------------------------------------------

def test_rewritten_params_go_to_the_cache_not_the_asset_folder(sd, tiny, tmp_path):
    folder = tmp_path / "assets"
    shutil.copytree(tiny[0], folder)
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    cache = tmp_path / "cache"
    with sd.Pipeline(folder, cache, threads=1) as pipe:
        pipe.generate("a bridge", "", width=384, height=256, steps=1, seed=1)
        pipe.generate("a bridge", "", width=256, height=256, steps=1, seed=1)  # -opt params: nothing cached
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == before
    cached = sorted(p.name for p in cache.iterdir())
    assert [name.split("-")[0] for name in cached] == ["AutoencoderKL", "UNetModel"]
    assert all("384x256" in name for name in cached)
    unet = next(cache.glob("UNetModel-*")).read_text()
    reshapes = [line for line in unet.splitlines() if line.startswith("Reshape")]
    assert "1=1536" in reshapes[0] and "1=48 2=32" in reshapes[1]  # 48 x 32 latent tokens
    assert "-23330=" not in unet


@pytest.mark.parametrize("width, height", [(255, 256), (128, 128), (256, 1088), (300, 256), (0, 0)])
def test_unsupported_sizes(sd, pipeline, width, height):
    from localai.errors import InvalidRequest

    assert not sd.size_supported(width, height)
    with pytest.raises(InvalidRequest, match="unsupported image size"):
        pipeline.generate("x", "", width=width, height=height, steps=1, seed=1)


def test_bad_steps_and_mode(pipeline):
    from localai.errors import InvalidRequest

    with pytest.raises(InvalidRequest, match="steps"):
        pipeline.generate("x", "", width=256, height=256, steps=0, seed=1)
    with pytest.raises(InvalidRequest, match="mode"):
        pipeline.generate("x", "", width=256, height=256, steps=1, mode=2, seed=1)


def test_too_long_prompt(pipeline):
    from localai.errors import InvalidRequest

    with pytest.raises(InvalidRequest, match="at most 1200"):
        pipeline.encode_prompt(" ".join(["cat"] * 1201))


def test_missing_assets_are_named(sd, tiny, tmp_path):
    from localai.errors import ModelLoadError

    folder = tmp_path / "assets"
    shutil.copytree(tiny[0], folder)
    (folder / "UNetModel-MHA-fp16.bin").unlink()
    (folder / "vocab.txt").unlink()
    with pytest.raises(ModelLoadError, match="lacks vocab.txt, UNetModel-MHA-fp16.bin"):
        sd.Pipeline(folder, tmp_path / "cache")
    with pytest.raises(ModelLoadError, match="lacks"):
        sd.Pipeline(tmp_path / "nowhere", tmp_path / "cache")


def test_damaged_assets_fail_cleanly(sd, tiny, tmp_path):
    from localai.errors import ModelLoadError, NativeError

    folder = tmp_path / "assets"
    shutil.copytree(tiny[0], folder)
    (folder / "log_sigmas.bin").write_bytes(b"\0" * 100)
    with pytest.raises(ModelLoadError, match="log_sigmas.bin holds 100 bytes"):
        sd.Pipeline(folder, tmp_path / "cache")
    shutil.copy(tiny[0] / "log_sigmas.bin", folder / "log_sigmas.bin")
    # a layer type the trimmed ncnn build leaves out is refused at load time
    param = folder / "AutoencoderKL-256-256-fp16-opt.param"
    param.write_text(param.read_text().replace("Swish", "Mish"))
    truncated = folder / "UNetModel-MHA-fp16.bin"
    truncated.write_bytes(truncated.read_bytes()[:1000])
    with sd.Pipeline(folder, tmp_path / "cache", threads=1) as pipe:
        with pytest.raises(NativeError, match="UNetModel-MHA-fp16.bin"):
            pipe.generate("x", "", width=256, height=256, steps=1, seed=1)
        with pytest.raises(NativeError, match="AutoencoderKL-256-256-fp16-opt.param"):
            pipe.decode(np.zeros((4, 32, 32), dtype=np.float32))


def test_closed_pipeline_refuses_calls(sd, tiny, tmp_path):
    from localai.errors import NativeError

    pipe = sd.Pipeline(tiny[0], tmp_path / "cache")
    pipe.close()
    pipe.close()  # idempotent
    with pytest.raises(NativeError, match="closed"):
        pipe.encode_prompt("x")


def test_version(sd):
    assert sd.version().startswith("sd-ncnn ") and "ncnn 1.0.20260526" in sd.version()
    assert os.path.basename(sd.__file__) == "sd.py"
