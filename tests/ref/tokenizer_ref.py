# tokenizer_ref.py — builds a multilingual corpus (>= 200 lines), trains a small unigram SentencePiece
# model with Debian's spm_train (T5 ids: pad 0, eos 1, unk 2), and writes the expected cleaned texts,
# ids and masks computed with python3-sentencepiece and Python's html/re, following Wan's
# tokenizers.py (clean='whitespace'; ftfy replaced by the documented subset, as ftfy is not installed).
# Usage: tokenizer_ref.py OUTDIR ; writes OUTDIR/spiece.model and OUTDIR/expected.lua
import html
import os
import random
import re
import subprocess
import sys

import sentencepiece as spm
from luaout import write_lua

BASE = [
    "A cat walks on the grass, realistic, 4k.",
    "一只猫在草地上行走，写实风格。",
    "猫が草の上を歩いている、リアルな映像。",
    "Кошка идёт по траве, реалистично.",
    "قطة تمشي على العشب، واقعية.",
    "घास पर चलती हुई एक बिल्ली।",
    "고양이가 잔디 위를 걷고 있다.",
    "Un chat marche sur l'herbe, très réaliste — été.",
    "Eine Katze läuft über das Gras, Straße, Größe.",
    "Un gato camina sobre la hierba, ¿verdad? ¡Sí!",
    "Μια γάτα περπατά στο γρασίδι.",
    "Mèo đi trên cỏ, chân thực.",
    "แมวเดินบนหญ้า",
    "חתול הולך על הדשא.",
    "Kot idzie po trawie, żółć, źdźbło.",
    "A drone shot 🚁 over the sea 🌊 at sunset 🌅.",
    "Tom &amp; Jerry &lt;chase&gt; &quot;each other&quot; &#39;fast&#39; &#x263A; &copy;2024 &nbsp;end",
    "&amp;amp; double &amp;lt;escaped&amp;gt; and &eacute;t&eacute; &notit; &ampx &#0; &#128; &#x110000;",
    "“Curly quotes” and ‘single’ ones ‛odd‟ and ʼapostrophe",
    "tabs\tand\nnewlines\r\nand\u3000ideographic\u00a0nbsp\u2003em  spaces   here",
    "   leading and trailing   ",
    "ＦＵＬＬＷＩＤＴＨ ｔｅｘｔ １２３ and ligatures ﬁ ﬂ",
    "Numbers 1234567890 and symbols !@#$%^&*()_+-=[]{}|;':\",./<>?",
    "<b>bold</b> &amp; <i>italic</i> with a tag keeps &rsquo;curly&rsquo;",
    "control\x07chars\x0band\x1fmore\x7f",
    "The quick brown fox jumps over the lazy dog.",
    "Zwölf Boxkämpfer jagen Viktor quer über den großen Sylter Deich.",
    "Съешь же ещё этих мягких французских булок, да выпей чаю.",
    "視頻中，一個穿著紅色衣服的女孩在雪地裡奔跑，慢動作，電影感。",
    "Cinematic close-up of a hummingbird drinking nectar, shallow depth of field, 120fps slow motion.",
]


def ftfy_subset(t):
    if "<" not in t:
        t = html.unescape(t)
    out = []
    i = 0
    while i < len(t):
        c = t[i]
        o = ord(c)
        if 0x80 <= o <= 0x9f:
            out.append(html._invalid_charrefs.get(o, c))
        elif o == 0x2bc or 0x2018 <= o <= 0x201b:
            out.append("'")
        elif 0x201c <= o <= 0x201f:
            out.append('"')
        elif c == "\r":
            if i + 1 < len(t) and t[i + 1] == "\n":
                i += 1
            out.append("\n")
        elif o in (0x2028, 0x2029, 0x85):
            out.append("\n")
        elif o <= 8 or o == 0x0b or 0x0e <= o <= 0x1f or o == 0x7f or 0x206a <= o <= 0x206f or o == 0xfeff \
                or 0xfff9 <= o <= 0xfffc:
            pass
        else:
            out.append(c)
        i += 1
    return "".join(out)


WS = "[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+"


def clean(t):
    t = ftfy_subset(t)
    t = html.unescape(html.unescape(t)).strip()
    t = re.sub(WS, " ", t)
    return t.strip()


def corpus():
    rnd = random.Random(1234)
    lines = list(BASE)
    words = " ".join(BASE).split()
    while len(lines) < 240:
        k = rnd.randint(1, 25)
        ws = [rnd.choice(words) for _ in range(k)]
        sep = rnd.choice([" ", "  ", "\t", " \u3000", "\n"])
        lines.append(sep.join(ws))
    lines.append(" ".join(words * 3))  # longer than 512 tokens: truncation
    return lines


def main(outdir):
    os.makedirs(outdir, exist_ok=True)
    lines = corpus()
    train = os.path.join(outdir, "train.txt")
    with open(train, "w", encoding="utf-8") as f:
        for l in lines:
            f.write(clean(l).replace("\n", " ") + "\n")
    prefix = os.path.join(outdir, "spiece")
    subprocess.run(["spm_train", "--input=" + train, "--model_prefix=" + prefix, "--vocab_size=400", "--hard_vocab_limit=false",
                    "--model_type=unigram", "--character_coverage=1.0", "--pad_id=0", "--eos_id=1",
                    "--unk_id=2", "--bos_id=-1", "--minloglevel=2"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sp = spm.SentencePieceProcessor(model_file=prefix + ".model")
    res = {"texts": lines, "cleaned": [], "raw_ids": [], "ids": [], "mask": [], "ids16": []}
    for l in lines:
        c = clean(l)
        res["cleaned"].append(c)
        ids = sp.encode(c)
        res["raw_ids"].append(ids)
        for key, L in (("ids", 512), ("ids16", 16)):
            row = ids[:L - 1] + [1]
            m = [1] * len(row) + [0] * (L - len(row))
            row = row + [0] * (L - len(row))
            res[key].append(row)
            if key == "ids":
                res["mask"].append(m)
    res["vocab_size"] = sp.get_piece_size()
    write_lua(os.path.join(outdir, "expected.lua"), res)


if __name__ == "__main__":
    main(sys.argv[1])
