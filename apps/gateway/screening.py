"""Memory text screened before the gateway injects it into a model's prompt.

A memory is data someone (an agent, a capture hook, an import) wrote earlier; injected
into a system prompt it would carry the authority of an instruction. So before injection
each memory's text is NFKC-normalised (full-width letters, ligatures and other
compatibility forms folded to their plain letters, so full-width "ignore" reads as ``ignore``),
stripped of zero-width and other invisible format characters, and matched against the
prompt-injection patterns below. A flagged memory is not injected; the gateway counts it
(``memoryweb_gateway_screened_out_total``). The memory itself is left as it is: screening
decides what reaches a prompt, not what is stored.

The patterns are deliberately few and specific (instructions aimed at the model, role
markers of chat templates, attempts to close the memory block): a fact that merely
mentions "instructions" is not flagged.
"""

from __future__ import annotations

import re
import unicodedata

#: (name, pattern) over the normalised, lower-cased text. Names are what a flag reports.
PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (name, re.compile(pattern)) for name, pattern in (
        ("ignore_instructions",
         r"\b(ignore|disregard|forget|override)\b.{0,40}\b(previous|prior|above|earlier|all|"
         r"system|your)\b.{0,40}\b(instructions?|prompts?|rules|guidelines|directives)\b"),
        ("new_instructions",
         r"\b(new|updated|real|actual)\s+(system\s+)?(instructions?|prompt)\s*:"),
        ("role_override", r"\byou\s+are\s+now\b|\bact\s+as\s+(an?\s+)?(unrestricted|jailbroken)\b"
                          r"|\bdeveloper\s+mode\b|\bdan\s+mode\b"),
        ("system_prompt_leak", r"\b(reveal|print|show|repeat|output)\b.{0,30}\b(system\s+prompt|"
                               r"hidden\s+instructions?)\b"),
        ("chat_markup", r"<\|(im_start|im_end|system|user|assistant|endoftext)\|>|\[/?inst\]"
                        r"|<</?sys>>|^\s*(system|assistant)\s*:"),
        ("block_escape", r"</?\s*memories?\b|end\s+of\s+memories"),
    ))

#: Unicode categories dropped after NFKC: format (zero-width joiners, bidi controls) and
#: other invisible controls, except the ordinary whitespace kept by the test below.
_DROPPED = {"Cf", "Cc", "Co", "Cn"}


def normalise(text: str) -> str:
    """NFKC, invisible characters removed (newlines and tabs kept)."""
    folded = unicodedata.normalize("NFKC", text)
    return "".join(ch for ch in folded
                   if ch in "\n\t" or unicodedata.category(ch) not in _DROPPED)


def flags(text: str) -> list[str]:
    """The names of the patterns ``text`` matches after normalisation (empty: clean)."""
    lowered = normalise(text).lower()
    return [name for name, pattern in PATTERNS
            if pattern.search(lowered) or (name == "chat_markup" and any(
                pattern.search(line) for line in lowered.splitlines()))]
