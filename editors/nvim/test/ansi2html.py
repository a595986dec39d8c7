#!/usr/bin/env python3
"""Turns a `tmux capture-pane -e -p` dump (text with SGR escapes) into an HTML page that draws
the terminal's cells in a monospace font, for screenshots.sh to photograph with headless
Chromium. Plain python3, no packages.

    ansi2html.py --cols 100 --rows 8 --fg '#e0e2ea' --bg '#14161b' [--cursor X,Y,bar|block] \
        in.ans out.html

Handles SGR 0-9, 21-29, 30-37/90-97, 40-47/100-107, 38/48/58 with ;5;N, ;2;R;G;B and their
colon forms (38:2::R:G:B), 39/49/59, underline styles 4:0-4:5 (4:3 is undercurl), 53 overline.
Prints the page's size in pixels (WIDTH HEIGHT) on stdout.
"""

import argparse
import html
import math
import re
import sys
import unicodedata

FONT_PX = 16
LINE_PX = 21
PAD_PX = 10
# DejaVu Sans Mono's advance width is 1233/2048 em.
CELL_PX = FONT_PX * 1233 / 2048

BASE16 = [
    "#000000", "#cd0000", "#00cd00", "#cdcd00", "#0000ee", "#cd00cd", "#00cdcd", "#e5e5e5",
    "#7f7f7f", "#ff0000", "#00ff00", "#ffff00", "#5c5cff", "#ff00ff", "#00ffff", "#ffffff",
]


def palette(n):
    """The xterm 256-colour palette."""
    if n < 16:
        return BASE16[n]
    if n < 232:
        n -= 16
        steps = [0, 95, 135, 175, 215, 255]
        return "#%02x%02x%02x" % (steps[n // 36], steps[(n // 6) % 6], steps[n % 6])
    v = 8 + 10 * (n - 232)
    return "#%02x%02x%02x" % (v, v, v)


def rgb(r, g, b):
    return "#%02x%02x%02x" % (int(r), int(g), int(b))


class Style:
    __slots__ = ("fg", "bg", "ul_color", "bold", "dim", "italic", "underline", "reverse",
                 "hidden", "strike", "overline")

    def __init__(self):
        self.reset()

    def reset(self):
        self.fg = self.bg = self.ul_color = None
        self.bold = self.dim = self.italic = self.reverse = False
        self.hidden = self.strike = self.overline = False
        self.underline = 0  # 0 none, 1 single, 2 double, 3 curly, 4 dotted, 5 dashed

    def key(self):
        return tuple(getattr(self, s) for s in self.__slots__)

    def copy(self):
        s = Style()
        for a in self.__slots__:
            setattr(s, a, getattr(self, a))
        return s


def extended_color(params, i):
    """Reads `5;N` or `2;R;G;B` after a 38/48/58 at params[i]; returns (colour, next index)."""
    if i + 1 < len(params) and params[i + 1] == "5" and i + 2 < len(params):
        return palette(int(params[i + 2] or 0)), i + 3
    if i + 1 < len(params) and params[i + 1] == "2" and i + 4 < len(params):
        return rgb(*(p or 0 for p in params[i + 2:i + 5])), i + 5
    return None, len(params)


def colon_color(sub):
    """A colon form: 38:5:N, 38:2:R:G:B or 38:2:CS:R:G:B."""
    if len(sub) >= 3 and sub[1] == "5":
        return palette(int(sub[2] or 0))
    if len(sub) >= 5 and sub[1] == "2":
        return rgb(*(p or 0 for p in sub[-3:]))
    return None


# SGR codes that set or clear attributes: code -> (attribute, value) pairs.
SGR_ATTRS = {
    1: [("bold", True)],
    2: [("dim", True)],
    3: [("italic", True)],
    4: [("underline", 1)],
    7: [("reverse", True)],
    8: [("hidden", True)],
    9: [("strike", True)],
    21: [("underline", 2)],
    22: [("bold", False), ("dim", False)],
    23: [("italic", False)],
    24: [("underline", 0)],
    27: [("reverse", False)],
    28: [("hidden", False)],
    29: [("strike", False)],
    39: [("fg", None)],
    49: [("bg", None)],
    53: [("overline", True)],
    55: [("overline", False)],
    59: [("ul_color", None)],
}


def apply_sgr(st, text):
    params = text.split(";") if text else ["0"]
    i = 0
    while i < len(params):
        p = params[i]
        if ":" in p:
            sub = p.split(":")
            if sub[0] == "4":
                st.underline = int(sub[1] or 0) if len(sub) > 1 else 1
            elif sub[0] in ("38", "48", "58"):
                c = colon_color(sub)
                setattr(st, {"38": "fg", "48": "bg", "58": "ul_color"}[sub[0]], c)
            i += 1
            continue
        n = int(p or 0)
        if n in (38, 48, 58):
            c, i = extended_color(params, i)
            setattr(st, {38: "fg", 48: "bg", 58: "ul_color"}[n], c)
            continue
        if n == 0:
            st.reset()
        elif n in SGR_ATTRS:
            for attr, value in SGR_ATTRS[n]:
                setattr(st, attr, value)
        elif 30 <= n <= 37:
            st.fg = BASE16[n - 30]
        elif 40 <= n <= 47:
            st.bg = BASE16[n - 40]
        elif 90 <= n <= 97:
            st.fg = BASE16[n - 90 + 8]
        elif 100 <= n <= 107:
            st.bg = BASE16[n - 100 + 8]
        i += 1


TOKEN = re.compile(r"\x1b\[([0-9;:]*)m|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b\[[0-9;:?]*[A-Za-z]|\x1b.")


def parse(dump, cols, rows):
    """The screen as rows of cells (char, Style); wide characters take two cells."""
    grid = []
    st = Style()
    for line in dump.split("\n")[:rows]:
        cells = []
        pos = 0
        for m in TOKEN.finditer(line):
            for ch in line[pos:m.start()]:
                add_char(cells, ch, st)
            if m.group(1) is not None:
                apply_sgr(st, m.group(1))
            pos = m.end()
        for ch in line[pos:]:
            add_char(cells, ch, st)
        grid.append(cells[:cols])
    while len(grid) < rows:
        grid.append([])
    return grid


def add_char(cells, ch, st):
    if unicodedata.combining(ch) and cells:
        c, s = cells[-1]
        cells[-1] = (c + ch, s)
        return
    cells.append((ch, st.copy()))
    if unicodedata.east_asian_width(ch) in ("W", "F"):
        cells.append(("", st.copy()))


def mix(a, b, t):
    """a blended towards b by t (for dim text)."""
    pa = [int(a[i:i + 2], 16) for i in (1, 3, 5)]
    pb = [int(b[i:i + 2], 16) for i in (1, 3, 5)]
    return rgb(*(round(x + (y - x) * t) for x, y in zip(pa, pb)))


def css(st, fg0, bg0, cursor):
    fg, bg = st.fg or fg0, st.bg or bg0
    if st.reverse:
        fg, bg = bg, fg
    if cursor == "block":
        fg, bg = bg, fg
    if st.dim:
        fg = mix(fg, bg, 0.4)
    if st.hidden:
        fg = bg
    out = []
    if fg != fg0:
        out.append("color:" + fg)
    if bg != bg0:
        out.append("background:" + bg)
    if st.bold:
        out.append("font-weight:bold")
    if st.italic:
        out.append("font-style:italic")
    lines = []
    if st.underline:
        lines.append("underline")
    if st.strike:
        lines.append("line-through")
    if st.overline:
        lines.append("overline")
    if lines:
        out.append("text-decoration-line:" + " ".join(lines))
        if st.underline:
            kind = {2: "double", 3: "wavy", 4: "dotted", 5: "dashed"}.get(st.underline, "solid")
            out.append("text-decoration-style:" + kind)
            out.append("text-decoration-color:" + (st.ul_color or fg))
            out.append("text-decoration-skip-ink:none")
            out.append("text-underline-offset:3px")
    if cursor == "bar":
        out.append("box-shadow:inset 2px 0 0 " + fg0)
    return ";".join(out)


def render(grid, cols, rows, fg0, bg0, cursor):
    blank = Style()
    body = []
    for y, cells in enumerate(grid):
        cells = cells + [(" ", blank)] * (cols - len(cells))
        spans = []
        run, run_css = "", None
        for x, (ch, st) in enumerate(cells):
            cur = cursor[2] if cursor and (x, y) == cursor[:2] else None
            c = css(st, fg0, bg0, cur)
            if c != run_css and run:
                spans.append((run_css, run))
                run = ""
            run_css = c
            run += ch
        if run:
            spans.append((run_css, run))
        body.append('<div class="r">' + "".join(
            '<span style="%s">%s</span>' % (c, html.escape(t)) if c else "<span>%s</span>" % html.escape(t)
            for c, t in spans) + "</div>")
    width = math.ceil(cols * CELL_PX) + 2 * PAD_PX
    height = rows * LINE_PX + 2 * PAD_PX
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><style>
html, body {{ margin: 0; background: {bg0}; }}
.t {{ padding: {PAD_PX}px; color: {fg0}; font: {FONT_PX}px/{LINE_PX}px 'DejaVu Sans Mono', monospace;
      white-space: pre; font-variant-ligatures: none; }}
.r {{ height: {LINE_PX}px; }}
.r span {{ display: inline-block; height: {LINE_PX}px; vertical-align: top; }}
</style></head><body><div class="t">{"".join(body)}</div></body></html>
"""
    return page, width, height


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cols", type=int, required=True)
    ap.add_argument("--rows", type=int, required=True)
    ap.add_argument("--fg", required=True, help="the default foreground, #rrggbb")
    ap.add_argument("--bg", required=True, help="the default background, #rrggbb")
    ap.add_argument("--cursor", help="X,Y,bar|block (0-based cell)")
    ap.add_argument("input")
    ap.add_argument("output")
    a = ap.parse_args()
    cursor = None
    if a.cursor:
        x, y, shape = a.cursor.split(",")
        cursor = (int(x), int(y), shape)
    with open(a.input, encoding="utf-8", errors="replace") as f:
        dump = f.read()
    page, w, h = render(parse(dump, a.cols, a.rows), a.cols, a.rows, a.fg.lower(), a.bg.lower(), cursor)
    with open(a.output, "w", encoding="utf-8") as f:
        f.write(page)
    print(w, h)


if __name__ == "__main__":
    sys.exit(main())
