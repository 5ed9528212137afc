"""The scratch models' tokenizer: byte-level BPE with one token per digit.

Every from-scratch architecture shares this tokenizer, trained once on the
pretraining corpus with HF ``tokenizers``:

* **byte-level** (GPT-2 style byte-to-unicode alphabet, seeded with all 256
  bytes), so any text — GSM8K included — encodes without ``<unk>``;
* **digits split individually** (``Digits(individual_digits=True)`` before the
  byte-level split), so ``"250"`` is always ``2 5 0``: the models must do
  arithmetic digit by digit, as in the LLaMA tokenizer;
* special tokens ``<pad>`` (padding), ``<s>`` (bos), ``</s>`` (eos),
  ``<unk>`` and ``<mask>`` (reserved for a masked-diffusion LM), at ids 0–4;
  padding is never eos;
* a post-processor that prepends ``<s>`` (never appends ``</s>``), so the
  evaluation prompt ``tokenizer("Question: ...\\nAnswer:")`` is exactly a prefix
  of the training tokenization of ``prompt + " " + answer`` (pretraining
  appends ``</s>`` itself);
* character offsets (``return_offsets_mapping=True``) for mapping spans of
  inserted noise to tokens.

Training is deterministic: the same corpus and vocabulary size give a
byte-identical ``tokenizer.json``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

PAD_TOKEN = "<pad>"
BOS_TOKEN = "<s>"
EOS_TOKEN = "</s>"
UNK_TOKEN = "<unk>"
MASK_TOKEN = "<mask>"
SPECIAL_TOKENS: tuple[str, ...] = (PAD_TOKEN, BOS_TOKEN, EOS_TOKEN, UNK_TOKEN, MASK_TOKEN)


def _min_vocab_size() -> int:
    """Smallest sensible vocabulary: the special tokens plus the 256 byte symbols."""
    return len(SPECIAL_TOKENS) + len(pre_tokenizers.ByteLevel.alphabet())


def train_tokenizer(texts: Iterable[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """Train the byte-level, digit-splitting BPE tokenizer on ``texts``.

    Args:
        texts: the training documents (e.g. ``format_example(q, a)`` of every
            corpus row). Order matters only through BPE tie-breaking, which the
            ``tokenizers`` trainer resolves deterministically.
        vocab_size: total vocabulary size including the 5 special tokens and the
            256 byte symbols (so at least 261); BPE merges fill the rest (fewer if
            the corpus runs out of pairs).

    Returns:
        A ``PreTrainedTokenizerFast`` with pad/bos/eos/unk/mask set,
        ``padding_side="right"`` (training); see :func:`attnlab.models.loader.prepare_for_generation`
        for the left-padded copy used at generation time.

    Raises:
        ValueError: if ``vocab_size`` is too small or ``texts`` is empty.
    """
    minimum = _min_vocab_size()
    if vocab_size < minimum:
        raise ValueError(f"vocab_size={vocab_size} is too small: need at least {minimum} (5 special + 256 bytes)")
    texts = list(texts)
    if not texts:
        raise ValueError("train_tokenizer got an empty corpus")

    tokenizer = Tokenizer(models.BPE(unk_token=UNK_TOKEN, fuse_unk=False, byte_fallback=False))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer, length=len(texts))

    bos_id = tokenizer.token_to_id(BOS_TOKEN)
    # ByteLevel(trim_offsets=False) keeps each token's offsets on the exact characters it
    # covers (a leading space belongs to its token); TemplateProcessing then adds <s>.
    tokenizer.post_processor = processors.Sequence(
        [
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(
                single=f"{BOS_TOKEN} $A",
                pair=f"{BOS_TOKEN} $A {BOS_TOKEN} $B:1",
                special_tokens=[(BOS_TOKEN, bos_id)],
            ),
        ]
    )
    return _wrap(tokenizer)


def _wrap(tokenizer: Tokenizer) -> PreTrainedTokenizerFast:
    """Wrap a raw ``tokenizers.Tokenizer`` with the special-token roles set."""
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token=PAD_TOKEN,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        unk_token=UNK_TOKEN,
        mask_token=MASK_TOKEN,
        padding_side="right",
        clean_up_tokenization_spaces=False,
        model_max_length=1_000_000,
    )


def save_tokenizer(tokenizer: PreTrainedTokenizerFast, out_dir: str | os.PathLike[str]) -> Path:
    """``save_pretrained`` the tokenizer into ``out_dir`` (created) and return the folder.

    Writes ``tokenizer.json`` (the deterministic artefact) and
    ``tokenizer_config.json``. The folder is written to a temporary sibling first
    and renamed into place, so a killed job leaves no half-written tokenizer.
    """
    from attnlab.io import atomic_dir

    with atomic_dir(out_dir) as tmp:
        tokenizer.save_pretrained(tmp)
        # Normalise tokenizer.json's formatting so the file is byte-stable.
        tok_json = tmp / "tokenizer.json"
        data = json.loads(tok_json.read_text(encoding="utf-8"))
        tok_json.write_text(json.dumps(data, ensure_ascii=False, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    return Path(out_dir)


# Backwards-friendly short name used in the brief.
save = save_tokenizer


def load_tokenizer(path: str | os.PathLike[str]) -> PreTrainedTokenizerFast:
    """Load a tokenizer folder written by :func:`save_tokenizer` (local files only).

    Raises:
        FileNotFoundError: if ``path`` has no ``tokenizer.json``.
    """
    folder = Path(path)
    if not (folder / "tokenizer.json").is_file():
        raise FileNotFoundError(f"no tokenizer.json in tokenizer folder {folder}")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
