"""Where programs come from: an OpenAI-compatible endpoint, a local transformers model with
grammar-constrained decoding, or a script (tests, recorded answers)."""

from __future__ import annotations

import base64
import io
import json
import socket
import time
import urllib.error
import urllib.request
from abc import ABC, abstractmethod

import numpy as np


class BackendError(Exception):
    """The model could not be asked (unreachable, refused, timed out, malformed answer)."""


class Backend(ABC):
    name = "backend"

    @abstractmethod
    def complete(self, messages: list[dict], image: np.ndarray | None = None) -> str:
        """Answer a chat (`[{"role": ..., "content": str}]`); `image` goes with the first user message."""


class ScriptedBackend(Backend):
    """Answers from a list (one per call) or a function of the messages."""

    name = "scripted"

    def __init__(self, answers):
        self.answers = answers
        self.calls: list[list[dict]] = []

    def complete(self, messages, image=None) -> str:
        self.calls.append([dict(m) for m in messages])
        if callable(self.answers):
            return self.answers(messages)
        if len(self.calls) > len(self.answers):
            raise BackendError(f"scripted backend has only {len(self.answers)} answers")
        return self.answers[len(self.calls) - 1]


def png_data_url(image: np.ndarray) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.asarray(image, dtype=np.uint8)[..., :3]).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


class OpenAIBackend(Backend):
    """Any OpenAI-compatible chat-completions endpoint (vLLM, llama.cpp server, hosted APIs)."""

    name = "openai"

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        timeout: float = 120.0,
        retries: int = 3,
        backoff: float = 1.0,
        temperature: float = 0.2,
        max_tokens: int = 1500,
    ):
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model, self.api_key = model, api_key
        self.timeout, self.retries, self.backoff = timeout, retries, backoff
        self.temperature, self.max_tokens = temperature, max_tokens

    def _payload(self, messages, image) -> bytes:
        out, attached = [], False
        for message in messages:
            if message["role"] == "user" and image is not None and not attached:
                content = [
                    {"type": "text", "text": message["content"]},
                    {"type": "image_url", "image_url": {"url": png_data_url(image)}},
                ]
                out.append({"role": "user", "content": content})
                attached = True
            else:
                out.append({"role": message["role"], "content": message["content"]})
        return json.dumps(
            {"model": self.model, "messages": out, "temperature": self.temperature, "max_tokens": self.max_tokens}
        ).encode()

    def complete(self, messages, image=None) -> str:
        body = self._payload(messages, image)
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        last = "no attempt"
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    data = json.loads(response.read().decode("utf-8"))
                return message_text(data["choices"][0]["message"].get("content"), self.url)
            except urllib.error.HTTPError as error:
                detail = error.read().decode("utf-8", "replace")[:300]
                last = f"HTTP {error.code} from {self.url}: {detail}"
                if error.code != 429 and error.code < 500:
                    raise BackendError(f"the endpoint refused the request ({last})") from None
            except urllib.error.URLError as error:
                reason = error.reason
                if isinstance(reason, (socket.timeout, TimeoutError)):
                    last = f"no answer from {self.url} within {self.timeout:g} s"
                else:
                    raise BackendError(f"cannot reach {self.url} ({reason}); is the server running?") from None
            except TimeoutError:
                last = f"no answer from {self.url} within {self.timeout:g} s"
            except (json.JSONDecodeError, UnicodeDecodeError, KeyError, IndexError, TypeError, AttributeError) as error:
                raise BackendError(f"malformed answer from {self.url} ({type(error).__name__}: {error})") from None
        raise BackendError(f"gave up after {self.retries + 1} attempts: {last}")


def message_text(content, where: str) -> str:
    """The text of a chat message's `content`: a string, or a list of parts (OpenAI multi-part:
    `{"type": "text", "text": ...}`, or bare strings) whose text parts are joined; None (no text,
    e.g. a refusal or a tool call) is "". Anything else is a malformed answer."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, dict) and part.get("type", "text") in ("text", "output_text"):
                text = part.get("text")
                if not isinstance(text, str):
                    raise BackendError(f"malformed answer from {where}: a text part without a string `text`")
                texts.append(text)
            elif not isinstance(part, dict):
                raise BackendError(f"malformed answer from {where}: a content part of type {type(part).__name__}")
        return "".join(texts)
    raise BackendError(
        f"malformed answer from {where}: message content is {type(content).__name__}, expected text or a list of parts"
    )


def generation_grammar() -> str:
    """grammars/rule.lark adapted for llguidance, which supports neither terminal priorities nor
    look-around: at least one statement, no comments (a generated `#abcdef ...` comment could read
    as a colour), and a plain `#rrggbb` colour terminal. Everything it accepts, rule.lark parses."""
    import re

    from ruledsl.parser import grammar_text

    text = grammar_text().replace("start: _statement*", "start: _statement+")
    text = re.sub(r"^([A-Z_]+)\.\d+:", r"\1:", text, flags=re.M)
    # rule.lark reads `#c08007orange` as a comment (a colour must not run into a name): without
    # look-around, a generated colour always ends with a space instead.
    text = re.sub(r"^COLOR: .*$", "COLOR: /#[0-9a-f]{6} /", text, flags=re.M)
    # lark's contextual lexer reads a keyword wherever one may stand (`exactly * 2` is the start of
    # `exactly K of ...`, `at least x` of `at least K times ...`); llguidance would also take the word
    # as a NAME there. So generated names are never keywords: then the two always agree.
    from ruledsl.lsp.completion import language_keywords

    text = re.sub(r"^NAME: .*$", lambda _: f"NAME: /{name_excluding(sorted(language_keywords()))}/", text, flags=re.M)
    # llguidance may also put a keyword right against a name (`paramx`, `a in C` as `ain C`), which
    # rule.lark reads as one name: a generated keyword always has a space on each side.
    text = re.sub(r'"([a-z_]+)"', r'" \1 "', text)
    return text.replace("%ignore COMMENT\n", "")


def name_excluding(words: list[str]) -> str:
    """A regex (no look-around, which llguidance lacks) for identifiers `[A-Za-z_][A-Za-z0-9_]*` other
    than `words`: walk the words' trie; at each prefix either stop (if the prefix is not a word), or
    leave the trie with a character no word continues with, or go on along the trie."""
    import string

    letters, digits, rest = string.ascii_letters + "_", string.digits, "A-Za-z0-9_"

    def node(prefix: str) -> str:
        nexts = sorted({w[len(prefix)] for w in words if w.startswith(prefix) and len(w) > len(prefix)})
        options = []
        if prefix and prefix not in words:
            options.append("")  # the identifier ends here
        pool = letters + (digits if prefix else "")  # what may come next: no digit first
        free = "".join(c for c in pool if c not in nexts)  # characters no word continues with
        if free:
            options.append(f"[{free}][{rest}]*")
        options.extend(c + node(prefix + c) for c in nexts)
        return "(" + "|".join(options) + ")" if len(options) > 1 else options[0]

    return node("")


def torch_zeros(size: int):
    import torch

    return torch.zeros(size)


class GrammarLogitsProcessor:
    """A transformers logits processor that masks every token the rule grammar cannot take next (llguidance)."""

    def __init__(self, tokenizer, prompt_length: int, max_new_tokens: int | None = None, reserve: int = 64):
        import llguidance
        import llguidance.hf
        import llguidance.torch

        self._lt = llguidance.torch
        self.tokenizer = llguidance.hf.from_tokenizer(tokenizer)
        grammar = llguidance.LLMatcher.grammar_from_lark(generation_grammar())
        self.matcher = llguidance.LLMatcher(self.tokenizer, grammar)
        if self.matcher.is_error():
            raise BackendError(
                f"the rule grammar does not compile for constrained decoding: {self.matcher.get_error()}"
            )
        self.bitmask = llguidance.torch.allocate_token_bitmask(1, self.tokenizer.vocab_size)
        self.prompt_length = prompt_length
        self.consumed = 0
        # Near the token limit, steer to the end: end-of-sequence when the program is complete, else
        # what closes an open construct (`)`, `]`, `"`), then separators, then a digit or a letter.
        self.finish_after = None if max_new_tokens is None else max(0, max_new_tokens - reserve)
        tiers = ({")", "]", '"'}, {":", "=", ","}, {*"0123456789", *"abcxyz"})
        self.finish_bias = torch_zeros(self.tokenizer.vocab_size)
        for i in range(self.tokenizer.vocab_size):
            text = tokenizer.decode([i]).strip()
            for rank, tier in enumerate(tiers):
                if text in tier:
                    self.finish_bias[i] = 1e4 * (len(tiers) - rank)
        if tokenizer.eos_token_id is not None:
            self.finish_bias[tokenizer.eos_token_id] = 1e4 * (len(tiers) + 1)

    def __call__(self, input_ids, scores):
        import torch

        generated = input_ids[0, self.prompt_length :].tolist()
        for token in generated[self.consumed :]:
            if not self.matcher.consume_token(token):
                raise BackendError(f"grammar rejected token {token}: {self.matcher.get_error()}")
        self.consumed = len(generated)
        self._lt.fill_next_token_bitmask(self.matcher, self.bitmask, 0)
        vocab = self.tokenizer.vocab_size
        allowed = scores[:, :vocab].clone()
        self._lt.apply_token_bitmask_inplace(allowed, self.bitmask)
        if self.finish_after is not None and self.consumed >= self.finish_after:
            allowed += self.finish_bias.to(allowed)  # still -inf where the grammar forbids a token
        out = torch.full_like(scores, float("-inf"))
        out[:, :vocab] = allowed
        return out


class TransformersBackend(Backend):
    """A local model loaded with from_pretrained(path): a vision-language model (image + text) or a
    causal LM (text only). With `constrained=True` every generated program parses (llguidance)."""

    name = "transformers"

    def __init__(
        self, path: str, constrained: bool = True, max_new_tokens: int = 600, temperature: float = 0.0, seed: int = 0
    ):
        import transformers

        self.constrained, self.max_new_tokens, self.temperature, self.seed = (
            constrained,
            max_new_tokens,
            temperature,
            seed,
        )
        try:
            self.processor = transformers.AutoProcessor.from_pretrained(path)
        except Exception:  # text-only models have no processor
            self.processor = None
        self.tokenizer = getattr(self.processor, "tokenizer", None) or transformers.AutoTokenizer.from_pretrained(path)
        self.vision = self.processor is not None and hasattr(self.processor, "image_processor")
        loader = transformers.AutoModelForImageTextToText if self.vision else transformers.AutoModelForCausalLM
        self.model = loader.from_pretrained(path).eval()

    @classmethod
    def from_parts(
        cls,
        model,
        tokenizer,
        constrained: bool = True,
        max_new_tokens: int = 600,
        temperature: float = 1.0,
        seed: int = 0,
    ) -> TransformersBackend:
        backend = cls.__new__(cls)
        backend.model, backend.tokenizer, backend.processor, backend.vision = model.eval(), tokenizer, None, False
        backend.constrained, backend.max_new_tokens = constrained, max_new_tokens
        backend.temperature, backend.seed = temperature, seed
        return backend

    def _inputs(self, messages, image):
        if self.vision and image is not None:
            from PIL import Image

            chat = [{"role": m["role"], "content": [{"type": "text", "text": m["content"]}]} for m in messages]
            first_user = next(m for m in chat if m["role"] == "user")
            first_user["content"].insert(0, {"type": "image"})
            text = self.processor.apply_chat_template(chat, add_generation_prompt=True)
            return self.processor(text=text, images=[Image.fromarray(np.asarray(image, np.uint8))], return_tensors="pt")
        if getattr(self.tokenizer, "chat_template", None):
            text = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        else:
            text = "\n\n".join(m["content"] for m in messages) + "\n\n"
        return self.tokenizer(text, return_tensors="pt")

    def complete(self, messages, image=None) -> str:
        import torch
        from transformers import LogitsProcessorList

        inputs = self._inputs(messages, image)
        length = inputs["input_ids"].shape[1]
        processors = LogitsProcessorList(
            [GrammarLogitsProcessor(self.tokenizer, length, self.max_new_tokens)] if self.constrained else []
        )
        torch.manual_seed(self.seed)
        with torch.no_grad():
            output = self.model.generate(
                **inputs,
                max_new_tokens=self.max_new_tokens,
                logits_processor=processors,
                do_sample=self.temperature > 0,
                temperature=self.temperature or None,
                top_k=0 if self.temperature > 0 else None,
                pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id,
                eos_token_id=self.tokenizer.eos_token_id,
            )
        return str(self.tokenizer.decode(output[0, length:], skip_special_tokens=True))
