#!/usr/bin/env python3
"""Reference ids for sdtrain's ClipTokenizer.

Generates a deterministic corpus (hand-written edge cases + a seeded random mix) and tokenizes it
with the reference: the Python CLIPTokenizer of transformers 4.x with ftfy installed (what SD v1
pipelines ran). transformers >= 5 dropped that class, so `SlowClipTokenizer` below reproduces its
code path line for line (transformers 4.57.1 tokenization_clip.py and PreTrainedTokenizer's
special-token split; OpenAI CLIP simple_tokenizer.py, MIT), using the real ftfy and regex
packages; vocab.json/merges.txt are derived from the shipped bpe_simple_vocab_16e6.txt.gz.
The tokenizers-backed transformers.CLIPTokenizer (the "fast" one, no ftfy) is run too, and its
rows are written for a cross-check.

Writes <out>/corpus.json: {"texts": [...], "category": [...], "slow": [[77 ids]], "fast": [[77
ids]], "ftfy_encoding": [bool: ftfy's mojibake repair changes the text], "ftfy_steps": [[the
fix_encoding steps ftfy took on the text, e.g. "encode:macroman", "transcode:restore_byte_a0"]],
"ftfy_fixed": [ftfy.fix_text(text)],
"slow_full": [[ids without specials or truncation]], "fast_decode": [decode of the slow row, skip
specials]}.
"""
import argparse
import gzip
import json
import os
import random
import sys
import unicodedata

import ftfy
import regex as re

CONTEXT = 77


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(2**8):
        if b not in bs:
            bs.append(b)
            cs.append(2**8 + n)
            n += 1
    return dict(zip(bs, [chr(n) for n in cs]))


def write_vocab_files(gz_path, out_dir):
    """vocab.json and merges.txt exactly as OpenAI CLIP's SimpleTokenizer derives them."""
    merges = gzip.open(gz_path).read().decode("utf-8").split("\n")
    merges = merges[1 : 49152 - 256 - 2 + 1]
    merges = [tuple(m.split()) for m in merges]
    vocab = list(bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab]
    for m in merges:
        vocab.append("".join(m))
    vocab.extend(["<|startoftext|>", "<|endoftext|>"])
    encoder = dict(zip(vocab, range(len(vocab))))
    with open(os.path.join(out_dir, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(encoder, f, ensure_ascii=False)
    with open(os.path.join(out_dir, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n")
        for m in merges:
            f.write(" ".join(m) + "\n")
    return encoder, merges


def get_pairs(word):
    return set(zip(word[:-1], word[1:]))


def whitespace_clean(text):
    text = re.sub(r"\s+", " ", text)
    return text.strip()


class SlowClipTokenizer:
    """transformers 4.57.1 CLIPTokenizer (Python) with ftfy, for __call__(padding="max_length",
    truncation=True, max_length=77): split on added tokens, _tokenize per piece, ids, truncate,
    add specials, pad with pad_token "<|endoftext|>"."""

    def __init__(self, vocab_dir):
        with open(os.path.join(vocab_dir, "vocab.json"), encoding="utf-8") as f:
            self.encoder = json.load(f)
        self.byte_encoder = bytes_to_unicode()
        with open(os.path.join(vocab_dir, "merges.txt"), encoding="utf-8") as f:
            bpe_merges = f.read().strip().split("\n")[1 : 49152 - 256 - 2 + 1]
        bpe_merges = [tuple(m.split()) for m in bpe_merges]
        self.bpe_ranks = dict(zip(bpe_merges, range(len(bpe_merges))))
        self.cache = {"<|startoftext|>": "<|startoftext|>", "<|endoftext|>": "<|endoftext|>"}
        self.pat = re.compile(
            r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
            re.IGNORECASE,
        )
        self.specials = re.compile(r"(<\|startoftext\|>|<\|endoftext\|>)")
        self.bos = self.encoder["<|startoftext|>"]
        self.eos = self.encoder["<|endoftext|>"]
        self.pad = self.eos
        self.unk = self.eos

    def bpe(self, token):
        if token in self.cache:
            return self.cache[token]
        word = tuple(token[:-1]) + (token[-1] + "</w>",)
        pairs = get_pairs(word)
        if not pairs:
            return token + "</w>"
        while True:
            bigram = min(pairs, key=lambda pair: self.bpe_ranks.get(pair, float("inf")))
            if bigram not in self.bpe_ranks:
                break
            first, second = bigram
            new_word = []
            i = 0
            while i < len(word):
                try:
                    j = word.index(first, i)
                except ValueError:
                    new_word.extend(word[i:])
                    break
                else:
                    new_word.extend(word[i:j])
                    i = j
                if word[i] == first and i < len(word) - 1 and word[i + 1] == second:
                    new_word.append(first + second)
                    i += 2
                else:
                    new_word.append(word[i])
                    i += 1
            word = tuple(new_word)
            if len(word) == 1:
                break
            pairs = get_pairs(word)
        word = " ".join(word)
        self.cache[token] = word
        return word

    def _tokenize(self, text):
        bpe_tokens = []
        text = whitespace_clean(ftfy.fix_text(text)).lower()
        for token in re.findall(self.pat, text):
            token = "".join(self.byte_encoder[b] for b in token.encode("utf-8"))
            bpe_tokens.extend(self.bpe(token).split(" "))
        return bpe_tokens

    def tokenize(self, text):
        tokens = []
        for piece in self.specials.split(text):
            if not piece:
                continue
            if piece in ("<|startoftext|>", "<|endoftext|>"):
                tokens.append(piece)
            else:
                tokens.extend(self._tokenize(piece))
        return tokens

    def encode(self, text):
        return [self.encoder.get(t, self.unk) for t in self.tokenize(text)]

    def __call__(self, text):
        ids = self.encode(text)[: CONTEXT - 2]
        ids = [self.bos] + ids + [self.eos]
        return ids + [self.pad] * (CONTEXT - len(ids))


# ---------------------------------------------------------------------------------------------
# Corpus

WORDS = ("a the of photo portrait painting of cat dog woman man girl boy castle forest city night "
         "sunset mountains river ocean beautiful detailed highly intricate digital art concept "
         "trending on artstation by greg rutkowski alphonse mucha unreal engine octane render 4k 8k "
         "hdr cinematic lighting sharp focus illustration smooth elegant fantasy sci-fi cyberpunk "
         "steampunk anime manga studio ghibli oil canvas watercolor sketch pencil drawing "
         "photorealistic dramatic volumetric fog dragon knight wizard robot astronaut spaceship "
         "flowers garden rain snow winter summer autumn spring golden hour bokeh depth field wide "
         "angle lens 35mm 85mm f/1.8 don't it's we're they've i'm you'll he'd can't won't "
         "Hello World THE QUICK BROWN FOX JUMPS OVER LAZY DOGS McDonald iPhone O'Neill").split()
SD_TAGS = ["masterpiece", "best quality", "1girl", "2boys", "solo", "long hair", "blue eyes",
           "looking at viewer", "smile", "highres", "absurdres", "ultra-detailed", "lowres",
           "bad anatomy", "bad hands", "text", "error", "missing fingers", "extra digit",
           "cropped", "worst quality", "jpeg artifacts", "signature", "watermark", "username",
           "blurry", "nsfw", "official art", "unity 8k wallpaper", "extremely detailed CG",
           "white background", "simple background", "school uniform", "thighhighs"]
UNICODE_SNIPPETS = [
    "café", "naïve", "résumé", "über", "Straße", "smörgåsbord", "crème brûlée", "señor", "façade",
    "Ærøskøbing", "ŒUVRE", "İstanbul", "ıi", "Ἀθῆναι", "ΟΔΥΣΣΕΥΣ", "λόγος", "ΣΊΣΥΦΟΣ σοφός",
    "Москва", "ПРИВЕТ мир", "Київ", "東京タワー", "猫が好きです", "北京烤鸭", "中文字符测试",
    "한국어 텍스트", "서울", "ひらがな カタカナ", "مرحبا بالعالم", "العربية", "שלום עולם", "สวัสดี",
    "नमस्ते दुनिया", "ქართული", "Հայերեն", "ትግርኛ", "😀", "👍🏽", "👨‍👩‍👧‍👦", "🇯🇵🇫🇷", "❤️", "✨🌸",
    "🎨🖌️", "e\u0301", "a\u0300\u0316", "n\u0303o", "Z\u0351\u0352\u0353", "\u1100\u1161\u11a8",
    "ﬁne ﬂour", "ＡＢＣ　ｄｅｆ１２３", "ｶﾀｶﾅ", "“quoted” ‘single’", "it’s", "don\u02bct",
    "½ ¾ ² ³ ⅷ Ⅻ", "١٢٣ ४५६", "①②③", "№ ™ © ®", "—–…", "•·°", "∑∫√∞≈≠", "€£¥₹", "\u00a0nbsp\u00a0",
    "zero\u200bwidth", "rtl\u200fmark", "soft\u00adhyphen", "tab\there", "new\nline", "cr\rlf\r\n",
    "\u2028ls\u2029ps", "\x1b[31mred\x1b[0m", "bell\x07char", "nul\x00char", "del\x7f", "\ufeffbom",
    "c1\x80\x93\x9d", "ſtraße", "'ſ", "ΑΣ ΣΑ Σ", "ǅemal ǈubljana", "Ĳssel", "ŉ", "ᾳ \u0345",
    "K\u212a", "Ω\u2126", "Å\u212b", "\u00b5\u03bc", "ß ẞ", "ǰ", "ﬀ ﬃ ﬄ ﬅ ﬆ", "𝐁𝐨𝐥𝐝", "𝓈𝒸𝓇𝒾𝓅𝓉",
]
ENTITIES = ["&amp;", "&amp;amp;", "&lt;b&gt;", "&quot;hi&quot;", "&#39;", "&#x2019;", "&#8217;",
            "&eacute;", "&EACUTE;", "&Eacute;", "&nbsp;", "&hellip;", "&copy;", "&#128;", "&#0;",
            "&#xD800;", "&#1114112;", "&#x1F600;", "&notanentity;", "&amp", "&#65abc;", "&NTILDE;",
            "&nTILDE;", "&SZLIG;", "&ntilde;", "&Jscr;", "&HilbertSpace;", "&#x;", "&#12;"]
MOJIBAKE_SOURCES = ["café", "naïve", "résumé", "Straße", "señor", "über", "✔ done", "it’s", "“quote”",
                    "日本語", "Москва", "crème brûlée", "smörgåsbord", "€100", "—dash—"]


# Real mojibake for ftfy's fix_encoding, one or more per branch of its plan (which codec decodes,
# restore_byte_a0, replace_lossy_sequences, utf-8-variants, decode_inconsistent_utf8, latin-1 read
# as windows-1252, fix_c1_controls), plus look-alikes that must stay unchanged.
MOJIBAKE_CASES = [
    "schÃ¶n", "â€œquotedâ€\x9d", "Ã©tÃ©", "ðŸ˜€", "Ãœber", "MÃœNCHEN", "Ã¼ber cool ÃŸ", "cÃ³digo", "Ã±andÃº",
    "ÃƒÂ©", "Ã¢â‚¬â„¢", "ГўВЂВњ test", "Â½ cup", "10Â°C", "Ã· division", "ï»¿BOM", "ã\x83\x84",
    "ÐŸÑ€Ð¸Ð²ÐµÑ‚ Ð¼Ð¸Ñ€", "Ð¡Ð\xa0Ð\x90", "Ø§Ù„Ø¹Ø±Ø¨ÙŠØ©", "à¤¨à¤®à¤¸à¥\x8dà¤¤à¥‡", "×\x90×‘×’",
    "Îµá½\x90Î»Î¿Î³Î·Ï„ÏŒÏ‚", "Å‚Ã³dÅº", "Ã¶\x1a",
    "cafĂ©", "вЂ”dashвЂ”", "вЂ™", "Р°Р±РІ", "Ξ•Ξ»Ξ»Ξ·Ξ½ΞΉΞΊΞ¬", "ğŸ˜€", "Ī•Ī»Ī»Ī·Ī½Ī¹ĪŗĪ¬", "Ĺ\x91 Ĺą",
    "na√Øve caf√©", "‚Äúmacroman‚Äù", "caf├⌐ r├⌐sum├⌐", "na√Øve caf√© – ok",
    "voilÃ le travail", "Ã la mode", "fÃ cil", "Ã s vezes", "Ã¡ Ã  Ã¢", "Ã\xa0 la",
    "â€œ like this â€\ufffd", "Ã©\ufffd", "â€œ? quoted", "â€?", "ðŸ˜?",
    "poo í\xa0½í²© emoji", "java Ã©À\x80 null", "null: Ã\x80Â\x80",
    "Ã¶ and â€” mixed with ВЂ", "naÃ¯ve cafÃ© and a real ŵ letter ✓", "déjà vu Ã©", "l’Ã©tÃ©",
    "It's Ã¢â‚¬Å“quotedÃ¢â‚¬Â", "Schrödinger Ã¶",
    "\x93quoted\x94", "C1 \x85 ellipsis", "\x81\x93x\x94",
    "Ã", "Ãx", "ÃŒ", "ÂÂ", "sÃ?", "Ã?ber", "cafÈ", "Ôªø", "РњРѕСЃРєРІР°", "ВЂ™", "Ä…Ä™", "ĂŠ", "Ã\x1a",
    "ð\x1a\x1a\x1a", "£100", "déjà vu", "×©×œ×•×", "Ã°Å¸â€˜Â", "Ã¢â€žÂ¢",
    "line one Ã©\nline two â€œokâ€\x9d\nÃ plain", "&lt;Ã©&gt; &amp; Ã¶", "Ã© <b>Ã¶</b>",
]
MOJIBAKE_CODECS = ["latin-1", "cp1252", "cp1251", "cp1250", "cp1253", "cp1254", "cp1257", "iso-8859-2",
                   "macroman", "cp437"]


def layered_mojibake(rng):
    """Text through one to three wrong decodings, sometimes with the damage real pipelines add
    (U+00A0 turned into a space, undecodable bytes turned into U+FFFD or '?')."""
    parts = []
    for _ in range(rng.randint(1, 3)):
        s = rng.choice(MOJIBAKE_SOURCES + ["à la mode", "😀 emoji", "Ελληνικά", "Łódź", "ő ű", "½°±"])
        if rng.random() < 0.8:
            for _ in range(rng.choice([1, 1, 1, 2, 3])):
                s = s.encode("utf-8").decode(rng.choice(MOJIBAKE_CODECS), errors="replace")
            if rng.random() < 0.15:
                s = s.replace("\u00a0", " ")
            if rng.random() < 0.1:
                s = s.replace("\ufffd", "?")
        parts.append(s)
    return rng.choice([" ", ", ", "\n", ""]).join(parts)


def mojibake(rng, text):
    enc = rng.choice(["cp1252", "latin-1", "cp1252", "cp1251", "macroman"])
    try:
        return text.encode("utf-8").decode(enc)
    except UnicodeDecodeError:
        return text.encode("utf-8").decode("latin-1")


def hand_written():
    cases = [
        "", " ", "   ", "\t\n\r", "\u3000", "\u00a0", "\n\n", "a", "A", "1", "12345", "3.14159",
        "a photograph of an astronaut riding a horse",
        "(masterpiece:1.2), (best quality:1.1), 1girl, solo, ((detailed eyes)), [bad hands], {wings}",
        "<|startoftext|>", "<|endoftext|>", "a<|endoftext|>b", "<|ENDOFTEXT|>", "<|startoftext|>hi<|endoftext|>",
        "!<|endoftext|>", "x <|endoftext|> y <|startoftext|>", "<|endoftext|><|endoftext|>",
        "I'm here, you're there, it's fine, we've gone, they'll come, he'd go, don't",
        "I'M HERE YOU'RE THERE", "'s 't 're 've 'm 'll 'd", "''s", "!!'s", "rock'n'roll",
        "hello world", "HELLO WORLD", "Hello, World!", "hello    world", "  leading and trailing  ",
        "a" * 300, "ab " * 100, " ".join(["word"] * 80), "1" * 90, "💩" * 40,
        "😀😀😀", "日本語のテキストです。", "e\u0301 vs \u00e9", "ＬＯＵＤ　ＮＯＩＳＥＳ", "Broken text&hellip; it&#x2019;s ﬂubberiﬁc!",
        "&macr;\\_(ã\x83\x84)_/&macr;", "âœ” No problems", "sÃ³", "voilÃ le travail", "The Mona Lisa doesnÃƒÂ¢Ã¢â€šÂ¬Ã¢â€žÂ¢t have eyebrows.",
        "&amp;amp; <b>bold</b> &amp;", "a < b &amp; c", "line1 &amp;\nline2 < &amp;\nline3 &amp;",
        "\x1b[36;44mI'm blue\x1b[0m", "(a:1.5) [b] {c} <lora:name:0.8> --ar 16:9 --v 5",
        "$100 #hashtag @user 50% 3+4=7 a/b\\c |pipe| ~tilde^ `tick` _under_",
        "ΣΑΣ", "ὈΔΥΣΣΕΎΣ", "İI", "ıİ", "Ǆ", "σ Σ ς", "Σ.", "AΣ'B", "AΣ\u0301", "aΣ\u0301b",
    ]
    cases += UNICODE_SNIPPETS + ENTITIES + ["&lt;" + e for e in ENTITIES[:5]]
    return cases


def random_text(rng):
    kind = rng.choice(["ascii", "ascii", "prompt", "prompt", "unicode", "mixed", "entities",
                       "mojibake", "long", "whitespace", "numbers", "chars"])
    if kind == "ascii":
        words = [rng.choice(WORDS) for _ in range(rng.randint(1, 25))]
        s = " ".join(words)
        if rng.random() < 0.5:
            s = s.capitalize() + rng.choice([".", "!", "?", "...", ""])
    elif kind == "prompt":
        parts = []
        for _ in range(rng.randint(2, 20)):
            t = rng.choice(SD_TAGS + WORDS)
            r = rng.random()
            if r < 0.2:
                t = f"({t}:{rng.choice(['0.8', '1.1', '1.2', '1.35', '1.5', '2'])})"
            elif r < 0.3:
                t = "(" * rng.randint(1, 3) + t + ")" * rng.randint(1, 3)
            elif r < 0.4:
                t = f"[{t}]"
            elif r < 0.45:
                t = "{" + t + "}"
            elif r < 0.5:
                t = f"<lora:{t.replace(' ', '_')}:{rng.choice(['0.6', '1'])}>"
            parts.append(t)
        s = rng.choice([", ", ",", " , ", " | ", ". "]).join(parts)
        if rng.random() < 0.2:
            s = s.upper()
    elif kind == "unicode":
        s = " ".join(rng.choice(UNICODE_SNIPPETS) for _ in range(rng.randint(1, 8)))
    elif kind == "mixed":
        pieces = [rng.choice(WORDS + UNICODE_SNIPPETS + SD_TAGS + ENTITIES) for _ in range(rng.randint(1, 15))]
        s = rng.choice([" ", "", ", ", "\n"]).join(pieces)
    elif kind == "entities":
        s = " ".join(rng.choice(ENTITIES + WORDS) for _ in range(rng.randint(1, 10)))
    elif kind == "mojibake":
        s = " ".join(mojibake(rng, rng.choice(MOJIBAKE_SOURCES)) if rng.random() < 0.5 else rng.choice(WORDS)
                     for _ in range(rng.randint(1, 6)))
    elif kind == "long":
        s = " ".join(rng.choice(WORDS + SD_TAGS + UNICODE_SNIPPETS) for _ in range(rng.randint(40, 120)))
    elif kind == "whitespace":
        s = "".join(rng.choice([" ", "\t", "\n", "\r\n", "\u00a0", "\u3000", "\u2003", "\x0b", "\x0c", "\x1c", "\x85", "a", "b"])
                    for _ in range(rng.randint(0, 12)))
    elif kind == "numbers":
        s = " ".join(rng.choice([str(rng.randint(0, 10**rng.randint(1, 12))), f"{rng.random():.4f}",
                                 f"{rng.randint(1, 9)}girl", "1e-5", "-42", "3/4", "²³", "١٢٣", "Ⅻ", "½",
                                 f"{rng.randint(1, 4096)}x{rng.randint(1, 4096)}"])
                     for _ in range(rng.randint(1, 10)))
    else:  # random characters from old, well-established blocks
        blocks = [(0x20, 0x7E), (0xA0, 0x17F), (0x370, 0x3FF), (0x400, 0x4FF), (0x590, 0x5FF),
                  (0x600, 0x6FF), (0x900, 0x97F), (0xE00, 0xE7F), (0x1E00, 0x1EFF), (0x2000, 0x206F),
                  (0x2100, 0x218F), (0x2190, 0x23FF), (0x2500, 0x27BF), (0x3000, 0x30FF),
                  (0x4E00, 0x4FFF), (0xAC00, 0xAD00), (0xFF00, 0xFFEF), (0x1F300, 0x1F5FF),
                  (0x300, 0x36F)]
        out = []
        for _ in range(rng.randint(1, 30)):
            lo, hi = rng.choice(blocks)
            c = chr(rng.randint(lo, hi))
            if unicodedata.category(c) in ("Cn", "Cs", "Co"):
                continue
            out.append(c)
        s = "".join(out)
    return kind, s


def make_corpus(n_random, seed):
    rng = random.Random(seed)
    texts, kinds = [], []
    for s in hand_written():
        texts.append(s)
        kinds.append("hand")
    for _ in range(n_random):
        kind, s = random_text(rng)
        texts.append(s)
        kinds.append(kind)
    # Own stream, so the strings above stay what they were.
    moji_rng = random.Random(seed + 1)
    for s in MOJIBAKE_CASES:
        texts.append(s)
        kinds.append("mojibake_hand")
    for _ in range(n_random // 12):
        texts.append(layered_mojibake(moji_rng))
        kinds.append("mojibake_layered")
    for s in long_words(random.Random(seed + 2)):
        texts.append(s)
        kinds.append("long_word")
    long_rng = random.Random(seed + 3)
    for _ in range(4):
        texts.append(long_mojibake_line(long_rng))
        kinds.append("long_mojibake")
    return texts, kinds


def long_mojibake_line(rng):
    """One line of thousands of characters with hundreds of mojibake runs among clean words: ftfy's
    decode_inconsistent_utf8 fixes each run, so the fixer must find them all in one pass."""
    pieces = []
    while sum(map(len, pieces)) < 4000:
        if rng.random() < 0.4:
            pieces.append(mojibake(rng, rng.choice(MOJIBAKE_SOURCES)))
        else:
            pieces.append(rng.choice(WORDS + ["Ã", "\u00a0", "a", "Ã©", "â€œ"]))
    return rng.choice([" ", "", ", "]).join(pieces)


def long_words(rng):
    """Single words of hundreds to thousands of symbols (a URL or base64 blob in a scraped caption):
    BPE merges thousands of times within one word, repeated pairs overlap ("aaaa", "abab"), and
    merges of equal rank meet merges of lower rank created between them."""
    alphabets = ["abcdefghijklmnopqrstuvwxyz", "ab", "a", "aab", "0123456789", "abcdefghijklmnopqrstuvwxyz0123456789",
                 "日本語学生", "😀💩🎉", "éèêàçœß", "ing", "thethe"]
    words = []
    for alphabet in alphabets:
        length = rng.randint(300, 1500)
        if len(alphabet) <= 6 and rng.random() < 0.5:  # periodic, not random
            words.append((alphabet * length)[:length])
        else:
            words.append("".join(rng.choice(alphabet) for _ in range(length)))
    words.append("".join(rng.choice(alphabets[0]) for _ in range(3000)))  # ~1 s for the reference
    return words


def fix_encoding_steps(text):
    """The fix_encoding steps ftfy.fix_text takes on `text` ("encode:latin-1", "decode:utf-8",
    "transcode:restore_byte_a0", "apply:decode_inconsistent_utf8", ...): fix_text's loop over
    line segments, with fix_and_explain's explanation of each."""
    config = ftfy.TextFixerConfig()
    steps, fixed, pos = set(), [], 0
    while pos < len(text):
        brk = text.find("\n", pos) + 1 or len(text)
        brk = min(brk, pos + config.max_decode_length)
        segment = text[pos:brk]
        if config.unescape_html == "auto" and "<" in segment:
            config = config._replace(unescape_html=False)
        out, explanation = ftfy.fix_and_explain(segment, config)
        fixed.append(out)
        steps |= {f"{a}:{b}" for a, b in explanation
                  if a in ("encode", "decode") or (a, b) in (("transcode", "restore_byte_a0"),
                     ("transcode", "replace_lossy_sequences"), ("transcode", "fix_c1_controls"),
                     ("apply", "decode_inconsistent_utf8"))}
        pos = brk
    assert "".join(fixed) == ftfy.fix_text(text), text  # the explanation is of what fix_text does
    return steps


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--merges", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                    "plugins", "models", "stable_diffusion", "tokenizer", "data", "bpe_simple_vocab_16e6.txt.gz"))
    ap.add_argument("--count", type=int, default=2400, help="random strings besides the hand-written ones")
    ap.add_argument("--seed", type=int, default=20240229)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    write_vocab_files(args.merges, args.out)

    texts, kinds = make_corpus(args.count, args.seed)
    slow = SlowClipTokenizer(args.out)
    slow_rows = [slow(t) for t in texts]
    slow_full = [slow.encode(t) for t in texts]

    from transformers import CLIPTokenizer  # tokenizers-backed in transformers >= 5
    fast = CLIPTokenizer.from_pretrained(args.out)
    fast_rows = fast(texts, padding="max_length", truncation=True, max_length=CONTEXT)["input_ids"]
    fast_decode = [fast.decode(r, skip_special_tokens=True) for r in slow_rows]

    pieces = [[p for p in re.split(r"<\|startoftext\|>|<\|endoftext\|>", t) if p] for t in texts]
    ftfy_encoding = [any(ftfy.fix_text(p) != ftfy.fix_text(p, fix_encoding=False) for p in ps) for ps in pieces]
    ftfy_steps = [sorted({s for p in ps for s in fix_encoding_steps(p)}) for ps in pieces]
    agree = sum(a == b for a, b in zip(slow_rows, fast_rows))
    print(f"{len(texts)} texts; fast tokenizer agrees with the reference on {agree}; "
          f"{sum(ftfy_encoding)} need ftfy's mojibake repair", file=sys.stderr)
    with open(os.path.join(args.out, "corpus.json"), "w", encoding="utf-8") as f:
        json.dump({"texts": texts, "category": kinds, "slow": slow_rows, "fast": fast_rows,
                   "slow_full": slow_full, "fast_decode": fast_decode, "ftfy_encoding": ftfy_encoding,
                   "ftfy_steps": ftfy_steps, "ftfy_fixed": [ftfy.fix_text(t) for t in texts],
                   "transformers_fast_version": __import__("transformers").__version__,
                   "ftfy_version": ftfy.__version__}, f, ensure_ascii=True)


if __name__ == "__main__":
    main()
