#!/usr/bin/python3
"""pretrain_default.py — builds the small model and tasks that ship with zeroth.

`npx zeroth finetune` with no arguments fine-tunes models/default on data/default. This script
makes both from public-domain texts that Debian packages ship, with nothing but Python's standard
library and Debian's python3-torch:

  corpus     the King James Bible (package bible-kjv-text, read with its `bible` program from
             bible-kjv) for pretraining and for the classification task; Ambrose Bierce's The
             Devil's Dictionary (package dict-devil) for the causal-LM fine-tuning task.
  tokenizer  a byte-level BPE (GPT-2's scheme) trained here on the pretraining chapters, written as a
             Hugging Face tokenizer.json + tokenizer_config.json.
  model      GPT-2 (Hugging Face GPT2LMHeadModel semantics and weight names) pretrained here with
             AdamW, written as config.json + model.safetensors (f32), with reference.safetensors:
             a few inputs and torch's logits and losses, so zeroth's forward can be checked.
  tasks      data/default/{train,eval}.jsonl (causal LM on Devil's Dictionary entries) and
             data/default/classify{,_train,_eval}.* (is a verse from the Old or the New Testament?).

Every random choice is seeded. Pretraining ends at --steps or after --max-minutes, whichever comes
first; when the time budget ends it (a busy machine), the weights depend on the machine's speed.
The tokenizer and the tasks do not. Regenerate everything (tools/README.md has the figures):

    apt-get install -y python3-torch bible-kjv bible-kjv-text dict-devil
    /usr/bin/python3 tools/pretrain_default.py            # at most --max-minutes (13) of pretraining

`--check-mezo` runs a short MeZO fine-tune in torch on the shipped model and tasks and prints the
held-out loss / accuracy before and after (the evidence that the tasks are learnable forward-only).
"""

import argparse
import array
import gzip
import json
import math
import os
import re
import struct
import subprocess
import sys
import time
import unicodedata
from collections import Counter

import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EOT = '<|endoftext|>'

# ----------------------------------------------------------------------------------------------
# Corpora.

OT_BOOKS = 39  # Genesis .. Malachi; the 27 books after them are the New Testament.


def read_kjv():
    """[(book_index, book, chapter, [verse texts])] in canonical order, from the `bible` program."""
    try:
        out = subprocess.run(['bible', 'gen1:1-rev22:21'], check=True, capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError) as err:
        sys.exit(f'cannot run `bible` ({err}): apt-get install -y bible-kjv bible-kjv-text')
    chapters, books = [], []
    lines = out.split('\n')
    header = re.compile(r'^((?:[1-3] )?[A-Z][A-Za-z ]+) (\d+)$')
    verse_start = re.compile(r'^\s+(\d+) (.*)$')
    for i, line in enumerate(lines):
        m = header.match(line)
        if m and (i == 0 or lines[i - 1] == '') and (i + 1 < len(lines) and lines[i + 1] == ''):
            book = m.group(1)
            if not books or books[-1] != book:
                books.append(book)
            chapters.append((len(books) - 1, book, int(m.group(2)), []))
            continue
        m = verse_start.match(line)
        if m:
            chapters[-1][3].append(m.group(2).strip())
        elif line.strip():
            chapters[-1][3][-1] += ' ' + line.strip()
    n_verses = sum(len(c[3]) for c in chapters)
    if len(books) != 66 or len(chapters) != 1189 or n_verses != 31102:
        sys.exit(f'unexpected KJV dump: {len(books)} books, {len(chapters)} chapters, {n_verses} verses '
                 '(expected 66, 1189, 31102)')
    return chapters


def read_devils_dictionary():
    """[(headword, entry text with whitespace collapsed)] from dict-devil's dictd files."""
    base = '/usr/share/dictd/devil'
    try:
        with gzip.open(base + '.dict.dz', 'rb') as f:
            data = f.read()
        index = open(base + '.index', encoding='utf-8').read().split('\n')
    except OSError as err:
        sys.exit(f'cannot read The Devil\'s Dictionary ({err}): apt-get install -y dict-devil')
    b64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'

    def num(s):
        v = 0
        for ch in s:
            v = v * 64 + b64.index(ch)
        return v

    entries = []
    for line in index:
        if not line or line.startswith('00database'):
            continue
        word, off, length = line.split('\t')
        text = data[num(off):num(off) + num(length)].decode('utf-8')
        entries.append((word, ' '.join(text.split())))
    return entries


# ----------------------------------------------------------------------------------------------
# Byte-level BPE (GPT-2's scheme): bytes -> printable characters, split with GPT-2's regex, merge.

def bytes_to_unicode():
    """GPT-2's table: printable bytes stand for themselves, the others are shifted past 255."""
    printable = list(range(0x21, 0x7f)) + list(range(0xa1, 0xad)) + list(range(0xae, 0x100))
    table, n = {}, 0
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + n)
            n += 1
    return table


BYTE_CHAR = bytes_to_unicode()


def _numeral_class():
    """Ranges of the Unicode numerals that are not decimal digits (categories No and Nl: '²', 'Ⅻ')."""
    ranges, start, prev = [], None, None
    for cp in range(sys.maxunicode + 1):
        if unicodedata.category(chr(cp)) in ('No', 'Nl'):
            if start is None:
                start = cp
            elif cp != prev + 1:
                ranges.append((start, prev))
                start = cp
            prev = cp
    ranges.append((start, prev))
    return ''.join(re.escape(chr(a)) + ('-' + re.escape(chr(b)) if b > a else '') for a, b in ranges)


# GPT-2's pre-tokenizer regex with \p{L} / \p{N} spelled in Python's `re`: \w is letters, numbers
# and '_'; \d is the decimal digits (Nd); the other numerals (No, Nl) are listed explicitly.
_NUMERALS = _numeral_class()
_L = rf'[^\W\d_{_NUMERALS}]'
_N = rf'[\d{_NUMERALS}]'
GPT2_SPLIT = re.compile(rf"""'s|'t|'re|'ve|'m|'ll|'d| ?{_L}+| ?{_N}+| ?(?:[^\s\w]|_)+|\s+(?!\S)|\s+""")


def pretokenize(text):
    return [''.join(BYTE_CHAR[b] for b in piece.encode('utf-8')) for piece in GPT2_SPLIT.findall(text)]


def train_bpe(texts, n_merges):
    """Merges learned on word counts: repeatedly join the most frequent adjacent pair
    (ties: the smallest pair in string order, so the result does not depend on dict order)."""
    counts = Counter()
    for t in texts:
        counts.update(pretokenize(t))
    words = [list(w) for w in counts]
    freqs = list(counts.values())
    pair_count = Counter()
    pair_where = {}
    for i, w in enumerate(words):
        for p in zip(w, w[1:]):
            pair_count[p] += freqs[i]
            pair_where.setdefault(p, set()).add(i)
    merges = []
    for _ in range(n_merges):
        if not pair_count:
            break
        top = max(pair_count.values())
        best = min(p for p, c in pair_count.items() if c == top)
        merges.append(best)
        joined = best[0] + best[1]
        for i in list(pair_where.pop(best, ())):
            w, f = words[i], freqs[i]
            for p in zip(w, w[1:]):
                pair_count[p] -= f
                if pair_count[p] <= 0:
                    del pair_count[p]
            merged, k = [], 0
            while k < len(w):
                if k + 1 < len(w) and w[k] == best[0] and w[k + 1] == best[1]:
                    merged.append(joined)
                    k += 2
                else:
                    merged.append(w[k])
                    k += 1
            words[i] = merged
            for p in zip(merged, merged[1:]):
                pair_count[p] += f
                pair_where.setdefault(p, set()).add(i)
    return merges


class ByteLevelBPE:
    """Encoder with the same rules as Hugging Face's BPE model: within each pre-token, merge the
    lowest-ranked adjacent pair (leftmost first) until no ranked pair is left."""

    def __init__(self, merges):
        self.vocab = {BYTE_CHAR[b]: b for b in range(256)}
        for a, b in merges:
            self.vocab[a + b] = len(self.vocab)
        self.eot_id = len(self.vocab)
        self.rank = {m: r for r, m in enumerate(merges)}
        self.merges = merges
        self.cache = {}

    @property
    def vocab_size(self):
        return self.eot_id + 1

    def _word(self, word):
        if word in self.cache:
            return self.cache[word]
        parts = list(word)
        while len(parts) > 1:
            ranked = [(self.rank.get((parts[k], parts[k + 1]), math.inf), k) for k in range(len(parts) - 1)]
            r, k = min(ranked)
            if r == math.inf:
                break
            parts[k:k + 2] = [parts[k] + parts[k + 1]]
        ids = [self.vocab[p] for p in parts]
        self.cache[word] = ids
        return ids

    def encode(self, text):
        """Ids of text; '<|endoftext|>' inside it is the special token, as in Hugging Face."""
        ids = []
        for k, chunk in enumerate(text.split(EOT)):
            if k > 0:
                ids.append(self.eot_id)
            for w in pretokenize(chunk):
                ids.extend(self._word(w))
        return ids

    def tokenizer_json(self):
        byte_level = {'type': 'ByteLevel', 'add_prefix_space': False, 'trim_offsets': True, 'use_regex': True}
        return {
            'version': '1.0',
            'truncation': None,
            'padding': None,
            'added_tokens': [{'id': self.eot_id, 'content': EOT, 'single_word': False, 'lstrip': False,
                              'rstrip': False, 'normalized': True, 'special': True}],
            'normalizer': None,
            'pre_tokenizer': byte_level,
            'post_processor': {**byte_level, 'trim_offsets': False},
            'decoder': byte_level,
            'model': {'type': 'BPE', 'dropout': None, 'unk_token': None, 'continuing_subword_prefix': '',
                      'end_of_word_suffix': '', 'fuse_unk': False, 'byte_fallback': False,
                      'ignore_merges': False, 'vocab': self.vocab,
                      'merges': [[a, b] for a, b in self.merges]},
        }

    def tokenizer_config(self, max_length):
        return {
            'add_bos_token': False,
            'add_eos_token': False,
            'add_prefix_space': False,
            'bos_token': EOT, 'eos_token': EOT, 'pad_token': EOT, 'unk_token': EOT,
            'clean_up_tokenization_spaces': False,
            'errors': 'replace',
            'model_max_length': max_length,
            'tokenizer_class': 'GPT2Tokenizer',
        }


# ----------------------------------------------------------------------------------------------
# GPT-2 with Hugging Face GPT2LMHeadModel semantics: learned positions, pre-LN blocks, tanh GELU,
# Conv1D weights stored [in, out], LM head tied to the token embedding.

class GPT2(torch.nn.Module):
    def __init__(self, vocab, n_layer, n_head, d, n_pos, eps=1e-5):
        super().__init__()
        self.n_head, self.eps = n_head, eps
        p = torch.nn.ParameterDict()
        shapes = {'transformer.wte.weight': (vocab, d), 'transformer.wpe.weight': (n_pos, d)}
        for i in range(n_layer):
            h = f'transformer.h.{i}.'
            shapes.update({
                h + 'ln_1.weight': (d,), h + 'ln_1.bias': (d,),
                h + 'attn.c_attn.weight': (d, 3 * d), h + 'attn.c_attn.bias': (3 * d,),
                h + 'attn.c_proj.weight': (d, d), h + 'attn.c_proj.bias': (d,),
                h + 'ln_2.weight': (d,), h + 'ln_2.bias': (d,),
                h + 'mlp.c_fc.weight': (d, 4 * d), h + 'mlp.c_fc.bias': (4 * d,),
                h + 'mlp.c_proj.weight': (4 * d, d), h + 'mlp.c_proj.bias': (d,),
            })
        shapes.update({'transformer.ln_f.weight': (d,), 'transformer.ln_f.bias': (d,)})
        self.names = list(shapes)
        self.n_layer = n_layer
        # HF's GPT-2 init: N(0, 0.02), residual projections scaled by 1/sqrt(2 n_layer), LN = (1, 0).
        for name, shape in shapes.items():
            t = torch.zeros(shape)
            if name.endswith('ln_1.weight') or name.endswith('ln_2.weight') or name.endswith('ln_f.weight'):
                t.fill_(1.0)
            elif name.endswith('.weight'):
                std = 0.02 / math.sqrt(2 * n_layer) if name.endswith('c_proj.weight') else 0.02
                t.normal_(0.0, std)
            p[name.replace('.', '__')] = torch.nn.Parameter(t)
        self.p = p

    def w(self, name):
        return self.p[name.replace('.', '__')]

    def state(self):
        return {n: self.w(n).detach().contiguous() for n in self.names}

    def load(self, tensors):
        with torch.no_grad():
            for n in self.names:
                self.w(n).copy_(tensors[n])

    def forward(self, ids, mask=None):
        """Logits [B, T, V]. mask [B, T] (1 = token, 0 = padding) hides padded keys, as HF does."""
        B, T = ids.shape
        d = self.w('transformer.wte.weight').shape[1]
        hd = d // self.n_head
        x = self.w('transformer.wte.weight')[ids] + self.w('transformer.wpe.weight')[:T]
        causal = torch.ones(T, T, dtype=torch.bool).tril()
        allowed = causal[None, None] if mask is None else causal[None, None] & mask.bool()[:, None, None, :]
        neg = torch.finfo(torch.float32).min
        for i in range(self.n_layer):
            h = f'transformer.h.{i}.'
            a = F.layer_norm(x, (d,), self.w(h + 'ln_1.weight'), self.w(h + 'ln_1.bias'), self.eps)
            qkv = a @ self.w(h + 'attn.c_attn.weight') + self.w(h + 'attn.c_attn.bias')
            q, k, v = (t.view(B, T, self.n_head, hd).transpose(1, 2) for t in qkv.split(d, dim=2))
            s = (q @ k.transpose(-1, -2)) / math.sqrt(hd)
            s = s.masked_fill(~allowed, neg)
            o = (s.softmax(-1) @ v).transpose(1, 2).reshape(B, T, d)
            x = x + o @ self.w(h + 'attn.c_proj.weight') + self.w(h + 'attn.c_proj.bias')
            a = F.layer_norm(x, (d,), self.w(h + 'ln_2.weight'), self.w(h + 'ln_2.bias'), self.eps)
            m = F.gelu(a @ self.w(h + 'mlp.c_fc.weight') + self.w(h + 'mlp.c_fc.bias'), approximate='tanh')
            x = x + m @ self.w(h + 'mlp.c_proj.weight') + self.w(h + 'mlp.c_proj.bias')
        x = F.layer_norm(x, (d,), self.w('transformer.ln_f.weight'), self.w('transformer.ln_f.bias'), self.eps)
        return x @ self.w('transformer.wte.weight').t()


def row_losses(logits, ids, mask):
    """Per-row mean next-token cross-entropy (float64) over pairs whose target is a real token."""
    lp = logits[:, :-1].double().log_softmax(-1)
    nll = -lp.gather(-1, ids[:, 1:, None].long())[..., 0]
    valid = (mask[:, 1:] * mask[:, :-1]).double()
    return (nll * valid).sum(1) / valid.sum(1).clamp(min=1)


# ----------------------------------------------------------------------------------------------
# safetensors, written and read by hand: u64 LE header length, JSON header, raw little-endian data.

ST_DTYPES = {torch.float32: 'F32', torch.float64: 'F64', torch.int32: 'I32'}
ST_TORCH = {v: k for k, v in ST_DTYPES.items()}
ST_ARRAY = {torch.float32: 'f', torch.float64: 'd', torch.int32: 'i'}


def save_safetensors(path, tensors, metadata=None):
    header, blobs, offset = {}, [], 0
    if metadata:
        header['__metadata__'] = metadata
    for name in sorted(tensors):
        t = tensors[name].contiguous().cpu()
        data = array.array(ST_ARRAY[t.dtype], t.flatten().tolist()).tobytes()  # x86: little-endian
        header[name] = {'dtype': ST_DTYPES[t.dtype], 'shape': list(t.shape), 'data_offsets': [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    head = json.dumps(header, separators=(',', ':')).encode()
    head += b' ' * (-len(head) % 8)  # pad so the data starts 8-byte aligned, as the Rust writer does
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(head)))
        f.write(head)
        for b in blobs:
            f.write(b)


def load_safetensors(path):
    with open(path, 'rb') as f:
        raw = f.read()
    n = struct.unpack('<Q', raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    out = {}
    for name, info in header.items():
        if name == '__metadata__':
            continue
        a, b = info['data_offsets']
        out[name] = torch.frombuffer(bytearray(raw[8 + n + a:8 + n + b]), dtype=ST_TORCH[info['dtype']]).reshape(info['shape'])
    return out


# ----------------------------------------------------------------------------------------------
# Pretraining.

def split_chapters(chapters, every):
    """Every `every`-th chapter (counting from the 7th) is held out: never seen in pretraining."""
    train, held = [], []
    for i, c in enumerate(chapters):
        (held if i % every == 6 % every else train).append(c)
    return train, held


def chapter_text(c):
    return '\n'.join(c[3])


def pretrain(args, tok, train_chapters, held_chapters):
    torch.manual_seed(args.seed)
    stream = []
    for c in train_chapters:
        stream.extend(tok.encode(chapter_text(c)))
        stream.append(tok.eot_id)
    held = []
    for c in held_chapters:
        held.extend(tok.encode(chapter_text(c)))
        held.append(tok.eot_id)
    data = torch.tensor(stream, dtype=torch.long)
    held = torch.tensor(held, dtype=torch.long)
    T = args.ctx
    print(f'pretraining tokens: {len(data)} train, {len(held)} held-out', flush=True)

    model = GPT2(tok.vocab_size, args.layers, args.heads, args.d_model, args.ctx)
    n_params = sum(p.numel() for p in model.parameters())
    print(f'model: {args.layers} layers, d_model {args.d_model}, {args.heads} heads, context {T}, '
          f'vocab {tok.vocab_size}: {n_params} parameters', flush=True)
    decay = [p for n, p in model.p.items() if p.dim() == 2]
    no_decay = [p for n, p in model.p.items() if p.dim() < 2]
    opt = torch.optim.AdamW([{'params': decay, 'weight_decay': 0.1}, {'params': no_decay, 'weight_decay': 0.0}],
                            lr=args.lr, betas=(0.9, 0.95))
    gen = torch.Generator().manual_seed(args.seed)

    budget = args.max_minutes * 60

    def lr_at(progress):
        # Warm up over the first steps, then cosine down to 10% as progress goes 0 -> 1.
        if step < args.warmup:
            return args.lr * (step + 1) / args.warmup
        return args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))

    def held_loss():
        model.eval()
        with torch.no_grad():
            n = (len(held) - 1) // T
            rows = torch.stack([held[i * T:i * T + T + 1] for i in range(n)])
            total = 0.0
            for k in range(0, n, 32):
                r = rows[k:k + 32]
                total += F.cross_entropy(model(r[:, :-1]).flatten(0, 1), r[:, 1:].flatten(), reduction='sum').item()
        model.train()
        return total / (n * T)

    # Progress is the larger of the step fraction and the wall-time fraction, so the schedule anneals
    # fully whether the step count or the time budget runs out first (on a busy machine, time does;
    # then the run is not bit-reproducible, and the printed step count says where it stopped).
    start = time.time()
    running = None
    step = progress = 0
    while progress < 1.0:
        elapsed = time.time() - start
        starts = torch.randint(0, len(data) - T - 1, (args.batch,), generator=gen)
        rows = torch.stack([data[s:s + T + 1] for s in starts.tolist()])
        lr = lr_at(min(progress, 1.0))
        for g in opt.param_groups:
            g['lr'] = lr
        loss = F.cross_entropy(model(rows[:, :-1]).flatten(0, 1), rows[:, 1:].flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        running = loss.item() if running is None else 0.95 * running + 0.05 * loss.item()
        if step % args.log_every == 0:
            print(f'step {step:5d}  train loss {running:.4f}  lr {lr:.2e}  {elapsed:6.0f} s', flush=True)
        step += 1
        progress = max(step / args.steps, (time.time() - start) / budget)
    step -= 1
    bound = 'steps' if (step + 1) >= args.steps else 'time budget'
    print(f'pretraining stopped by the {bound}', flush=True)
    final_held = held_loss()
    print(f'pretraining done: {step + 1} steps in {time.time() - start:.0f} s, '
          f'train loss (running mean) {running:.4f}, held-out loss {final_held:.4f} '
          f'(perplexity {math.exp(final_held):.1f})', flush=True)
    return model, {'steps': step + 1, 'seconds': round(time.time() - start), 'train_loss': round(running, 4),
                   'held_out_loss': round(final_held, 4), 'parameters': n_params,
                   'train_tokens': len(data), 'held_out_tokens': len(held)}


# ----------------------------------------------------------------------------------------------
# Output: the model folder and the tasks.

def write_model_folder(out, model, tok, args):
    os.makedirs(out, exist_ok=True)
    config = {
        'activation_function': 'gelu_new',
        'architectures': ['GPT2LMHeadModel'],
        'attn_pdrop': 0.0,
        'bos_token_id': tok.eot_id,
        'embd_pdrop': 0.0,
        'eos_token_id': tok.eot_id,
        'initializer_range': 0.02,
        'layer_norm_epsilon': 1e-05,
        'model_type': 'gpt2',
        'n_ctx': args.ctx,
        'n_embd': args.d_model,
        'n_head': args.heads,
        'n_inner': None,
        'n_layer': args.layers,
        'n_positions': args.ctx,
        'reorder_and_upcast_attn': False,
        'resid_pdrop': 0.0,
        'scale_attn_by_inverse_layer_idx': False,
        'scale_attn_weights': True,
        'tie_word_embeddings': True,
        'torch_dtype': 'float32',
        'use_cache': True,
        'vocab_size': tok.vocab_size,
    }
    with open(os.path.join(out, 'config.json'), 'w') as f:
        json.dump(config, f, indent=2)
        f.write('\n')
    # As save_pretrained writes it: transformer.* names, no lm_head.weight (tied to wte).
    save_safetensors(os.path.join(out, 'model.safetensors'), model.state(), {'format': 'pt'})
    with open(os.path.join(out, 'tokenizer.json'), 'w', encoding='utf-8') as f:
        json.dump(tok.tokenizer_json(), f, ensure_ascii=False, separators=(',', ':'))
    with open(os.path.join(out, 'tokenizer_config.json'), 'w') as f:
        json.dump(tok.tokenizer_config(args.ctx), f, indent=2)
        f.write('\n')


REFERENCE_TEXTS = [
    'In the beginning God created the heaven and the earth.',
    'Jesus wept.',
    'ABSURDITY, n. A statement or belief manifestly inconsistent with one\'s own opinion.',
]


# Texts whose Python ids the tests compare with zeroth's tokenizer: prose, numbers, runs of spaces,
# newlines and tabs, contractions, non-ASCII letters, an emoji, and the special token inside text.
TOKENIZER_SAMPLES = [
    'And God said, Let there be light: and there was light.',
    "Thou shalt not; it's the LORD's, and they'll know I'd done it.",
    'In 1611, 54 translators finished   the work.\n\n\tSelah!  ',
    'Crème brûlée, naïve café — ΑΩ 神 🙂 x²',
    'first<|endoftext|>second <|endoftext|> third',
    '',
    '   ',
]


def write_reference(out, model, tok):
    """A right-padded batch, torch's f32 logits and f64 per-row mean next-token losses."""
    rows = [tok.encode(t) for t in REFERENCE_TEXTS]
    T = max(len(r) for r in rows)
    ids = torch.full((len(rows), T), tok.eot_id, dtype=torch.int32)
    mask = torch.zeros((len(rows), T), dtype=torch.int32)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(r, dtype=torch.int32)
        mask[i, :len(r)] = 1
    model.eval()
    with torch.no_grad():
        logits = model(ids.long(), mask)
        losses = row_losses(logits, ids, mask)
    save_safetensors(os.path.join(out, 'reference.safetensors'),
                     {'input_ids': ids, 'attention_mask': mask, 'logits': logits.float(), 'losses': losses.double()},
                     {'texts': json.dumps(REFERENCE_TEXTS),
                      'tokenizer_samples': json.dumps([{'text': t, 'ids': tok.encode(t)} for t in TOKENIZER_SAMPLES],
                                                      ensure_ascii=False)})
    print(f'reference: {len(rows)} rows x {T} tokens, losses {[round(x, 4) for x in losses.tolist()]}', flush=True)


def write_jsonl(path, rows):
    with open(path, 'w', encoding='utf-8') as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + '\n')


CLASSIFY = {
    # The label words are the names the two testaments favour, so the pretrained model starts above
    # chance; fine-tuning sharpens that prior into a classifier.
    'template': '{text}\nAnd',
    'label_words': {'old': ' God', 'new': ' Jesus'},
}


def write_tasks(out, tok, train_chapters, held_chapters, args):
    os.makedirs(out, exist_ok=True)
    # Causal LM: Devil's Dictionary entries of at most max_tokens tokens; every 5th is held out.
    entries = [t for _, t in read_devils_dictionary() if len(tok.encode(t)) <= args.task_max_tokens]
    train = [{'text': t} for i, t in enumerate(entries) if i % 5 != 2]
    held = [{'text': t} for i, t in enumerate(entries) if i % 5 == 2]
    write_jsonl(os.path.join(out, 'train.jsonl'), train)
    write_jsonl(os.path.join(out, 'eval.jsonl'), held)
    print(f'causal-LM task: {len(train)} train, {len(held)} eval entries of The Devil\'s Dictionary', flush=True)

    # Classification: Old or New Testament. Train verses come from pretraining chapters, eval verses
    # from held-out chapters; both balanced, picked with a seeded shuffle, short verses only.
    g = torch.Generator().manual_seed(args.seed + 1)

    def pick(chapters, per_class, exclude=frozenset()):
        by = {'old': [], 'new': []}
        for c in chapters:
            label = 'old' if c[0] < OT_BOOKS else 'new'
            by[label].extend(v for v in dict.fromkeys(c[3])
                             if v not in exclude and len(tok.encode(v)) <= args.verse_max_tokens)
        per_class = min(per_class, *(len(v) for v in by.values()))  # keep the classes balanced
        rows = []
        for label, verses in by.items():
            order = torch.randperm(len(verses), generator=g).tolist()[:per_class]
            rows.extend({'text': verses[i], 'label': label} for i in sorted(order))
        order = torch.randperm(len(rows), generator=g).tolist()
        return [rows[i] for i in order]

    ctrain = pick(train_chapters, args.classify_train // 2)
    # Some verses recur word for word ("And the LORD spake unto Moses, saying,"): eval keeps only
    # verses that appear nowhere in the pretraining chapters.
    ceval = pick(held_chapters, args.classify_eval // 2, frozenset(v for c in train_chapters for v in c[3]))
    write_jsonl(os.path.join(out, 'classify_train.jsonl'), ctrain)
    write_jsonl(os.path.join(out, 'classify_eval.jsonl'), ceval)
    for word in CLASSIFY['label_words'].values():
        if len(tok.encode(word)) != 1:
            sys.exit(f'label word {word!r} is not one token of this tokenizer: pick another')
    with open(os.path.join(out, 'classify.json'), 'w') as f:
        json.dump({**CLASSIFY, 'train': 'classify_train.jsonl', 'eval': 'classify_eval.jsonl'}, f, indent=2)
        f.write('\n')
    print(f'classification task: {len(ctrain)} train, {len(ceval)} eval verses', flush=True)


# ----------------------------------------------------------------------------------------------
# MeZO check: forward-only fine-tuning in torch on the shipped files (in-place seeded perturbation,
# as in the MeZO code), to show each task improves on held-out data.

def lm_batches(tok, rows, max_len):
    enc = [tok.encode(r['text'])[:max_len] for r in rows]
    T = max(len(e) for e in enc)
    ids = torch.full((len(enc), T), tok.eot_id, dtype=torch.long)
    mask = torch.zeros((len(enc), T), dtype=torch.long)
    for i, e in enumerate(enc):
        ids[i, :len(e)] = torch.tensor(e)
        mask[i, :len(e)] = 1
    return ids, mask


def lm_loss(model, tok, rows, max_len):
    """Token-weighted mean next-token loss over the rows."""
    total, count = 0.0, 0
    for k in range(0, len(rows), 32):
        ids, mask = lm_batches(tok, rows[k:k + 32], max_len)
        logits = model(ids, mask)
        valid = (mask[:, 1:] * mask[:, :-1]).double()
        total += (row_losses(logits, ids, mask) * valid.sum(1)).sum().item()
        count += valid.sum().item()
    return total / count


def classify_scores(model, tok, rows, cfg):
    """Log-probs of each label word after the template, and the labels' indices: [N, L], [N]."""
    labels = list(cfg['label_words'])
    word_ids = [tok.encode(cfg['label_words'][l])[0] for l in labels]
    out, gold = [], []
    for k in range(0, len(rows), 32):
        chunk = rows[k:k + 32]
        enc = [tok.encode(cfg['template'].replace('{text}', r['text'])) for r in chunk]
        T = max(len(e) for e in enc)
        ids = torch.full((len(enc), T), tok.eot_id, dtype=torch.long)
        mask = torch.zeros((len(enc), T), dtype=torch.long)
        for i, e in enumerate(enc):
            ids[i, :len(e)] = torch.tensor(e)
            mask[i, :len(e)] = 1
        logits = model(ids, mask)
        last = torch.tensor([len(e) - 1 for e in enc])
        lp = logits[torch.arange(len(enc)), last].double().log_softmax(-1)[:, word_ids]
        out.append(lp)
        gold.extend(labels.index(r['label']) for r in chunk)
    return torch.cat(out), torch.tensor(gold)


def classify_metrics(model, tok, rows, cfg):
    lp, gold = classify_scores(model, tok, rows, cfg)
    loss = F.cross_entropy(lp, gold).item()  # over the label words only, as MeZO's classification loss
    acc = (lp.argmax(1) == gold).double().mean().item()
    return loss, acc


def mezo(model, loss_fn, train_rows, steps, lr, eps, batch, seed):
    params = [model.w(n) for n in model.names]
    g = torch.Generator().manual_seed(seed)
    order = []

    def perturb(step_seed, scale):
        zg = torch.Generator().manual_seed(step_seed)
        for p in params:
            p.add_(torch.normal(0.0, 1.0, p.shape, generator=zg), alpha=scale)

    with torch.no_grad():
        for step in range(steps):
            if len(order) < batch:
                order += torch.randperm(len(train_rows), generator=g).tolist()
            rows = [train_rows[i] for i in order[:batch]]
            del order[:batch]
            s = int(torch.randint(0, 2**31 - 1, (1,), generator=g))
            perturb(s, eps)
            lp = loss_fn(rows)
            perturb(s, -2 * eps)
            lm = loss_fn(rows)
            perturb(s, eps)
            grad = (lp - lm) / (2 * eps)
            perturb(s, -lr * grad)


def check_mezo(args):
    folder = os.path.join(args.root, 'models', 'default')
    data = os.path.join(args.root, 'data', 'default')
    cfg = json.load(open(os.path.join(folder, 'config.json')))
    tj = json.load(open(os.path.join(folder, 'tokenizer.json'), encoding='utf-8'))
    tok = ByteLevelBPE([tuple(m) for m in tj['model']['merges']])
    weights = load_safetensors(os.path.join(folder, 'model.safetensors'))
    read = lambda name: [json.loads(l) for l in open(os.path.join(data, name), encoding='utf-8')]

    def fresh():
        m = GPT2(cfg['vocab_size'], cfg['n_layer'], cfg['n_head'], cfg['n_embd'], cfg['n_positions'])
        m.load(weights)
        return m.eval()

    with torch.no_grad():
        train, held = read('train.jsonl'), read('eval.jsonl')
        m = fresh()
        before = lm_loss(m, tok, held, cfg['n_positions'])
        t0 = time.time()
        mezo(m, lambda rows: lm_loss(m, tok, rows, cfg['n_positions']), train, args.mezo_steps,
             args.mezo_lr, 1e-3, 16, args.seed)
        after = lm_loss(m, tok, held, cfg['n_positions'])
        print(f'MeZO causal LM ({args.mezo_steps} steps, lr {args.mezo_lr}, eps 1e-3, batch 16, full parameters, '
              f'{time.time() - t0:.0f} s): held-out loss {before:.4f} -> {after:.4f}', flush=True)

        ccfg = json.load(open(os.path.join(data, 'classify.json')))
        ctrain, ceval = read(ccfg['train']), read(ccfg['eval'])
        m = fresh()
        lb, ab = classify_metrics(m, tok, ceval, ccfg)
        t0 = time.time()
        mezo(m, lambda rows: classify_metrics(m, tok, rows, ccfg)[0], ctrain, args.mezo_steps,
             args.mezo_classify_lr, 1e-3, 16, args.seed)
        la, aa = classify_metrics(m, tok, ceval, ccfg)
        print(f'MeZO classification ({args.mezo_steps} steps, lr {args.mezo_classify_lr}, eps 1e-3, batch 16, '
              f'full parameters, {time.time() - t0:.0f} s): held-out loss {lb:.4f} -> {la:.4f}, '
              f'accuracy {ab:.3f} -> {aa:.3f}', flush=True)


# ----------------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--merges', type=int, default=4096 - 257, help='BPE merges (vocab = 256 bytes + merges + 1)')
    ap.add_argument('--layers', type=int, default=4)
    ap.add_argument('--heads', type=int, default=4)
    ap.add_argument('--d-model', type=int, default=256)
    ap.add_argument('--ctx', type=int, default=128, help='context length (n_positions)')
    ap.add_argument('--steps', type=int, default=1500, help='most AdamW steps (the schedule ends at --steps or --max-minutes, whichever comes first)')
    ap.add_argument('--batch', type=int, default=8)
    ap.add_argument('--lr', type=float, default=2e-3)
    ap.add_argument('--warmup', type=int, default=30)
    ap.add_argument('--max-minutes', type=float, default=13.0, help='wall-time budget of pretraining (the schedule anneals within it)')
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--seed', type=int, default=1611)
    ap.add_argument('--hold-every', type=int, default=40, help='hold out every N-th KJV chapter')
    ap.add_argument('--task-max-tokens', type=int, default=96)
    ap.add_argument('--verse-max-tokens', type=int, default=48)
    ap.add_argument('--classify-train', type=int, default=512)
    ap.add_argument('--classify-eval', type=int, default=256)
    ap.add_argument('--log-every', type=int, default=25)
    ap.add_argument('--root', default=ROOT, help='write models/default and data/default under this folder')
    ap.add_argument('--tasks-only', action='store_true', help='only rewrite data/default (uses the shipped tokenizer)')
    ap.add_argument('--check-mezo', action='store_true', help='only run the MeZO check on the shipped files')
    ap.add_argument('--mezo-steps', type=int, default=300)
    ap.add_argument('--mezo-lr', type=float, default=1e-4)
    ap.add_argument('--mezo-classify-lr', type=float, default=1e-4)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    if args.check_mezo:
        check_mezo(args)
        return
    if args.tasks_only:
        # Rebuild data/default from the shipped tokenizer, without pretraining again.
        tj = json.load(open(os.path.join(args.root, 'models', 'default', 'tokenizer.json'), encoding='utf-8'))
        tok = ByteLevelBPE([tuple(m) for m in tj['model']['merges']])
        train_ch, held_ch = split_chapters(read_kjv(), args.hold_every)
        write_tasks(os.path.join(args.root, 'data', 'default'), tok, train_ch, held_ch, args)
        return

    t0 = time.time()
    chapters = read_kjv()
    train_ch, held_ch = split_chapters(chapters, args.hold_every)
    print(f'KJV: {len(chapters)} chapters ({len(train_ch)} pretraining, {len(held_ch)} held out)', flush=True)
    merges = train_bpe([chapter_text(c) for c in train_ch], args.merges)
    tok = ByteLevelBPE(merges)
    print(f'tokenizer: {len(merges)} merges, vocab {tok.vocab_size} ({time.time() - t0:.0f} s)', flush=True)

    model, figures = pretrain(args, tok, train_ch, held_ch)
    out = os.path.join(args.root, 'models', 'default')
    write_model_folder(out, model, tok, args)
    write_reference(out, model, tok)
    write_tasks(os.path.join(args.root, 'data', 'default'), tok, train_ch, held_ch, args)
    with open(os.path.join(out, 'pretraining.json'), 'w') as f:
        json.dump({**figures, 'args': vars(args)}, f, indent=2)
        f.write('\n')
    print(f'done in {time.time() - t0:.0f} s', flush=True)


if __name__ == '__main__':
    main()
