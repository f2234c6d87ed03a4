#!/usr/bin/env python3
"""The HTML report (brisk-events report, brisk-train --report) in a real browser.

Usage: report_test.py BRISK_TRAIN BRISK_EVENTS TB_DEMO

For each of a default run, a resumed run, three runs in one directory, a regression run (no
accuracy), a run still being written (its last record torn) and a library program's logs
(tests/tb_demo: every summary kind), it writes the report and checks:
  - the DOM after Chromium ran the page's script (--dump-dom): one chart per scalar tag, one
    series per run that has the tag (two for train and validation), and the plotted points
    equal to the values in the event files, read here independently (TFRecord framing, both
    CRC-32Cs, the protobuf fields, TensorBoard's purge rule for resumed steps);
  - the pixels of a screenshot of each checked chart: every run's colour inside the plot
    area, and no series colour outside it;
  - the same logs give the same bytes, and an unreadable event file is named while the rest
    of the report is still written.
Skipped (exit 77) where Chromium is missing, unless BRISK_REQUIRE_CHROMIUM=1 (CI sets it):
then that is a failure. Runs with /usr/bin/python3's standard library only.
"""
import html.parser
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib

TRAIN, EVENTS, DEMO = sys.argv[1:4]
TMP = tempfile.mkdtemp(prefix="brisk-report-")
CHECKED = []


def fail(msg):
    print("FAIL [report]: " + msg)
    sys.exit(1)


def ok(msg):
    print("ok: " + msg)


# ---- an independent reader of event files ----------------------------------------------------

def _crc_table():
    t = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        t.append(c)
    return t


CRC_TABLE = _crc_table()


def masked_crc(data):
    c = 0xFFFFFFFF
    for b in data:
        c = CRC_TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    c ^= 0xFFFFFFFF
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def varint(b, i):
    r = s = 0
    while True:
        c = b[i]
        i += 1
        r |= (c & 0x7F) << s
        s += 7
        if not c & 0x80:
            return r, i


def fields(b):
    i = 0
    while i < len(b):
        key, i = varint(b, i)
        num, wire = key >> 3, key & 7
        if wire == 0:
            v, i = varint(b, i)
        elif wire == 1:
            v, i = b[i:i + 8], i + 8
        elif wire == 5:
            v, i = b[i:i + 4], i + 4
        elif wire == 2:
            n, i = varint(b, i)
            v, i = b[i:i + n], i + n
        else:
            raise ValueError("wire type %d" % wire)
        yield num, wire, v


def read_records(path):
    """The whole records of a file (a torn last one left out); both CRCs checked."""
    data = open(path, "rb").read()
    i, out = 0, []
    while i + 12 <= len(data):
        (n,) = struct.unpack("<Q", data[i:i + 8])
        (lc,) = struct.unpack("<I", data[i + 8:i + 12])
        if lc != masked_crc(data[i:i + 8]):
            raise ValueError("%s: bad length CRC at %d" % (path, i))
        if i + 16 + n > len(data):
            break  # torn: a writer is still at it
        rec = data[i + 12:i + 12 + n]
        (dc,) = struct.unpack("<I", data[i + 12 + n:i + 16 + n])
        if dc != masked_crc(rec):
            raise ValueError("%s: bad data CRC at %d" % (path, i))
        out.append(rec)
        i += 16 + n
    return out


def scalars_of_run(run_dir):
    """{tag: [(step, float32 value)]} with TensorBoard's purge rule applied."""
    series = {}
    for name in sorted(os.listdir(run_dir)):
        if "tfevents" not in name:
            continue
        for rec in read_records(os.path.join(run_dir, name)):
            step, values = 0, []
            for num, _, v in fields(rec):
                if num == 2:
                    step = v
                elif num == 5:
                    for n2, _, val in fields(v):
                        if n2 != 1:
                            continue
                        tag, simple = None, None
                        for n3, w3, x in fields(val):
                            if n3 == 1:
                                tag = x.decode()
                            elif n3 == 2 and w3 == 5:
                                (simple,) = struct.unpack("<f", x)
                        if tag is not None and simple is not None:
                            values.append((tag, simple))
            for tag, value in values:
                pts = series.setdefault(tag, [])
                while pts and pts[-1][0] >= step:
                    pts.pop()
                pts.append((step, value))
    return series


def scalars_of_logdir(logdir):
    """{run name: {tag: points}} for every directory holding event files."""
    runs = {}
    for d, _, files in os.walk(logdir):
        if any("tfevents" in f for f in files):
            rel = os.path.relpath(d, logdir)
            runs[rel] = scalars_of_run(d)
    return runs


def f32(text):
    return struct.unpack("<f", struct.pack("<f", float(text)))[0]


# ---- Chromium -------------------------------------------------------------------------------

def find_chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        p = shutil.which(name)
        if p:
            return p
    return None


CHROME = find_chromium()


def chrome(args, page, timeout=120):
    cmd = [CHROME, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
           "--force-device-scale-factor=1", "--user-data-dir=" + os.path.join(TMP, "profile"),
           "--enable-logging=stderr", "--v=0"] + args + ["file://" + os.path.abspath(page)]
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    err = r.stderr.decode(errors="replace")
    if "Uncaught" in err:
        fail("the page's script failed in Chromium: %s" % [l for l in err.splitlines()
                                                            if "Uncaught" in l][:3])
    return r.stdout.decode(errors="replace")


class Dom(html.parser.HTMLParser):
    """Charts (figure.chart) with their polylines, the runs table, problems, controls."""

    def __init__(self):
        super().__init__()
        self.charts, self.chart, self.controls_hidden, self.problems = {}, None, None, []
        self.in_problems = 0
        self.rows, self.row, self.cell = [], None, None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        cls = a.get("class", "")
        if tag == "figure" and cls == "chart":
            self.chart = self.charts.setdefault(a["data-tag"], [])
        elif tag == "polyline" and cls == "series" and self.chart is not None:
            self.chart.append(a)
        elif tag == "div" and a.get("id") == "controls":
            self.controls_hidden = "hidden" in a
        elif tag == "div" and cls == "problems":
            self.in_problems = 1
        elif tag == "tr":
            self.row = []
        elif tag in ("td", "th") and self.row is not None:
            self.cell = ""

    def handle_endtag(self, tag):
        if tag == "figure":
            self.chart = None
        elif tag == "div":
            self.in_problems = 0
        elif tag in ("td", "th") and self.row is not None and self.cell is not None:
            self.row.append(self.cell)
            self.cell = None
        elif tag == "tr" and self.row is not None:
            self.rows.append(self.row)
            self.row = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell += data
        if self.in_problems and data.strip():
            self.problems.append(data.strip())


def dom_of(report):
    d = Dom()
    d.feed(chrome(["--dump-dom"], report))
    if d.controls_hidden is not False:
        fail("%s: the script did not run (controls still hidden)" % report)
    return d


def png_pixels(path):
    """(width, height, rows of RGB tuples) of an 8-bit RGB or RGBA PNG, not interlaced."""
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    i, idat, w = 8, b"", 0
    while i < len(data):
        (n,) = struct.unpack(">I", data[i:i + 4])
        kind, body = data[i + 4:i + 8], data[i + 8:i + 8 + n]
        if kind == b"IHDR":
            w, h, depth, ctype, _, _, inter = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and ctype in (2, 6) and inter == 0, "unexpected PNG format"
            bpp = 3 if ctype == 2 else 4
        elif kind == b"IDAT":
            idat += body
        i += 12 + n
    raw = zlib.decompress(idat)
    stride = w * bpp
    prev = bytearray(stride)
    rows = []
    for y in range(h):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        if f == 1:
            for x in range(bpp, stride):
                line[x] = (line[x] + line[x - bpp]) & 0xFF
        elif f == 2:
            for x in range(stride):
                line[x] = (line[x] + prev[x]) & 0xFF
        elif f == 3:
            for x in range(stride):
                left = line[x - bpp] if x >= bpp else 0
                line[x] = (line[x] + ((left + prev[x]) >> 1)) & 0xFF
        elif f == 4:
            for x in range(stride):
                a = line[x - bpp] if x >= bpp else 0
                b, c = prev[x], prev[x - bpp] if x >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else b if pb <= pc else c
                line[x] = (line[x] + pred) & 0xFF
        rows.append([tuple(line[x:x + 3]) for x in range(0, stride, bpp)])
        prev = line
    return w, h, rows


# The plot area inside a chart's SVG (report.c: PX0, PX1, PY0, PY1).
PX0, PX1, PY0, PY1, SVG_W, SVG_H = 60, 548, 12, 248, 560, 280


def near(c, want, tol=60):
    return sum((a - b) ** 2 for a, b in zip(c, want)) <= tol * tol


def hexcol(s):
    return tuple(int(s[i:i + 2], 16) for i in (1, 3, 5))


def check_pixels(report, tag, colours, what):
    """Screenshot of one chart's SVG alone at the page's origin: each colour inside the plot
    area, no series colour outside it (the rest of the SVG: axes, ticks, labels)."""
    page = os.path.join(os.path.dirname(report), "shot-%d.html" % len(CHECKED))
    CHECKED.append(page)
    text = open(report, encoding="utf-8").read()
    css = ("<style>body{margin:0}body>*{visibility:hidden}figure.chart[data-tag='%s'] svg.plot"
           "{visibility:visible;position:fixed;left:0;top:0;z-index:9}</style></head>" % tag)
    open(page, "w", encoding="utf-8").write(text.replace("</head>", css, 1))
    png = page + ".png"
    chrome(["--screenshot=" + png, "--window-size=%d,%d" % (SVG_W + 20, SVG_H + 20)], page)
    w, h, rows = png_pixels(png)
    inside = {c: 0 for c in colours}
    outside = []
    for y in range(min(h, SVG_H)):
        for x in range(min(w, SVG_W)):
            px = rows[y][x]
            hit = [c for c in colours if near(px, hexcol(c))]
            if not hit:
                continue
            if PX0 <= x < PX1 and PY0 <= y < PY1:
                for c in hit:
                    inside[c] += 1
            else:
                outside.append((x, y, px))
    for c, n in inside.items():
        if n < 20:
            fail("%s: chart %s: colour %s has %d pixels in the plot area" % (what, tag, c, n))
    if outside:
        fail("%s: chart %s: %d series pixels outside the plot area: %s" %
             (what, tag, len(outside), outside[:5]))
    return inside


def run_in_page(report, js, suffix):
    """Runs js (which sets the variable `result` to a string) in a copy of the report after
    the page's own script, in Chromium, and returns that string (None if it did not run)."""
    page = report + suffix
    drive = ("<script>var result='';" + js + ";var r=document.createElement('pre');"
             "r.id='result';r.textContent=result;document.body.appendChild(r)</script></body>")
    text = open(report, encoding="utf-8").read()
    open(page, "w", encoding="utf-8").write(text.replace("</body>", drive, 1))
    m = re.search(r'<pre id="result">([^<]*)</pre>', chrome(["--dump-dom"], page))
    return m.group(1).replace("&quot;", '"').replace("&amp;", "&") if m else None


def check_script(report):
    """Smoothing and the log scale, driven as a user would: the overlay draws smoothed curves
    (TensorBoard's debiased moving average of the plotted points), the axis shows powers of
    ten, and turning both off restores the chart."""
    js = ("var sm=document.getElementById('smooth'),lg=document.getElementById('logy');"
          "var c=document.querySelector(\"figure.chart[data-tag='epoch_loss'] svg.plot\");"
          "var lin=[].map.call(c.querySelectorAll('g.axes text'),function(t){return t.textContent})"
          ".join(' ');"
          "sm.value='0.6';sm.dispatchEvent(new Event('input'));lg.checked=true;"
          "lg.dispatchEvent(new Event('change'));"
          "result=JSON.stringify({over:c.querySelectorAll('g.overlay "
          "polyline').length,lin:lin,ticks:[].map.call(c.querySelectorAll('g.axes text'),function(t)"
          "{return t.textContent}),op:c.querySelector('g.data').style.opacity});"
          "lg.checked=false;lg.dispatchEvent(new Event('change'));result+='|'+"
          "c.querySelector('g.overlay polyline').getAttribute('points');"
          "sm.value='0';sm.dispatchEvent(new Event('input'));lg.checked=false;"
          "lg.dispatchEvent(new Event('change'));result+='|'+c.querySelectorAll("
          "'g.overlay polyline').length+'|'+c.querySelector('g.data').style.opacity")
    got = run_in_page(report, js, ".script.html")
    if not got:
        fail("the smoothing and log-scale controls did not run")
    text = open(report, encoding="utf-8").read()
    first, smoothed, after_over, after_op = got.split("|")
    res = json.loads(first)
    # Two runs (train, validation), each a faint raw line and its smoothed line.
    # The log axis: its labels are values in the data's range, at 1, 2, 5 (...) x 10^k.
    ys = [float(t) for t in res["ticks"] if re.fullmatch(r"[0-9.e+-]+", t) and t not in
          res["lin"].split()]
    if res["over"] != 4 or res["op"] != "0" or len(ys) < 2:
        fail("smoothing + log scale: %s" % res)
    # The smoothed train curve: TensorBoard's formula on the plotted points, in pixels.
    dom = Dom()
    dom.feed(text)
    line = dom.charts["epoch_loss"][0]
    box = [float(v) for v in re.search(r'data-tag="epoch_loss".*?data-box="([^"]*)"', text,
                                       re.S).group(1).split()]
    x0, x1, y0, y1, xa, xb, ya, yb = box
    last, k, want = 0.0, 0, []
    for p in line["points"].split():
        s, v = p.split(",")
        last = last * 0.6 + 0.4 * float(v)
        k += 1
        sv = last / (1 - 0.6 ** k)
        want.append((x0 + (int(s) - xa) * (x1 - x0) / (xb - xa),
                     y1 - (sv - ya) * (y1 - y0) / (yb - ya)))
    got = [tuple(float(t) for t in p.split(",")) for p in smoothed.split()]
    if len(got) != len(want) or any(abs(a - c) > 0.06 or abs(b - d) > 0.06
                                    for (a, b), (c, d) in zip(got, want)):
        fail("the smoothed curve %s is not TensorBoard's %s" % (got[:3], want[:3]))
    if after_over != "0" or after_op != "1":
        fail("turning smoothing and the log scale off left %s overlay lines, opacity %s" %
             (after_over, after_op))
    ok("smoothing and the log scale redraw the chart, and turn off again")


def check_report(logdir, what, pixel_tags=("epoch_loss",), expect_problem=None):
    report = os.path.join(logdir, "report.html")
    r = subprocess.run([EVENTS, "report", logdir], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE)
    if expect_problem:
        if r.returncode != 1 or expect_problem not in r.stderr.decode():
            fail("%s: exit %d, stderr %r: the damaged file is not named" %
                 (what, r.returncode, r.stderr.decode()))
    elif r.returncode != 0:
        fail("%s: brisk-events report exit %d: %s" % (what, r.returncode, r.stderr.decode()))
    first = open(report, "rb").read()
    subprocess.run([EVENTS, "report", logdir, "-o", report + ".again"], stdout=subprocess.PIPE,
                   stderr=subprocess.PIPE)
    if open(report + ".again", "rb").read() != first:
        fail("%s: two reports of the same logs differ" % what)
    os.remove(report + ".again")
    runs = scalars_of_logdir(logdir)
    tags = sorted({t for s in runs.values() for t in s})
    dom = dom_of(report)
    if sorted(dom.charts) != tags:
        fail("%s: charts %s, tags in the event files %s" % (what, sorted(dom.charts), tags))
    for tag, lines in dom.charts.items():
        have = sorted(l["data-run"] for l in lines)
        want = sorted(r for r, s in runs.items() if tag in s and s[tag])
        if have != want:
            fail("%s: chart %s draws runs %s, the files have %s" % (what, tag, have, want))
        for l in lines:
            pts = [p.split(",") for p in l["points"].split()]
            got = [(int(s), f32(v)) for s, v in pts]
            exp = runs[l["data-run"]][tag]
            if int(l["data-n"]) != len(exp):
                fail("%s: %s %s: data-n %s, %d points in the files" %
                     (what, l["data-run"], tag, l["data-n"], len(exp)))
            if len(exp) <= 960 and got != exp:
                fail("%s: %s %s: plotted %s, the files say %s" %
                     (what, l["data-run"], tag, got[:5], exp[:5]))
            if not set(got) <= set(exp):
                fail("%s: %s %s: a plotted point is not in the files" % (what, l["data-run"], tag))
            dashed = "stroke-dasharray" in l
            if dashed != l["data-run"].endswith("validation"):
                fail("%s: %s is %s" % (what, l["data-run"], "dashed" if dashed else "solid"))
    for tag in pixel_tags:
        colours = sorted({l["stroke"] for l in dom.charts[tag]})
        check_pixels(report, tag, colours, what)
    ok("%s: %d charts, %d runs, values as in the files, pixels in the plot area" %
       (what, len(dom.charts), len(runs)))
    return dom, runs


def train(*args):
    r = subprocess.run([TRAIN, "--data", "synthetic", "--synthetic-n", "1500",
                        "--synthetic-test-n", "300", "--quiet"] + list(args),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if r.returncode != 0:
        fail("brisk-train %s: exit %d: %s" % (" ".join(args), r.returncode, r.stderr.decode()))


def main():
    if not CHROME:
        if os.environ.get("BRISK_REQUIRE_CHROMIUM") == "1":
            fail("BRISK_REQUIRE_CHROMIUM=1 but Chromium is not installed")
        print("SKIP: needs Chromium (apt-get install chromium) to render the report")
        sys.exit(77)

    # 1. A default run (with --report: the report the logging thread refreshed).
    d = os.path.join(TMP, "default")
    train("--model", "32-16-4", "--epochs", "3", "--logdir", d, "--report")
    live = open(os.path.join(d, "report.html"), "rb").read()
    dom, runs = check_report(d, "a default run")
    if live != open(os.path.join(d, "report.html"), "rb").read():
        fail("the report brisk-train --report left differs from brisk-events report's")
    check_script(os.path.join(d, "report.html"))
    table = {r[0].strip(): r for r in dom.rows[1:]}
    if "." not in table or "finished" not in table["."][-1]:
        fail("the runs table lacks the run or its state: %s" % dom.rows)
    if any("being written" in r[-1] for r in dom.rows[1:]):
        fail("a finished run is shown as being written")
    ok("brisk-train --report left the same report; the runs table shows the run finished")

    # 2. A resumed run: 2 epochs, resumed to 4 from the first checkpoint's successor, no
    # fold-back (steps increase in every plotted series).
    d = os.path.join(TMP, "resumed")
    train("--model", "32-16-4", "--epochs", "2", "--logdir", d)
    train("--resume=" + d, "--epochs", "4")
    dom, runs = check_report(d, "a resumed run")
    for tag, lines in dom.charts.items():
        for l in lines:
            steps = [int(p.split(",")[0]) for p in l["points"].split()]
            if steps != sorted(set(steps)):
                fail("a resumed run: %s %s folds back" % (l["data-run"], tag))
    if len(runs["train"]["epoch_loss"]) != 4:
        fail("a resumed run: %d epochs of epoch_loss" % len(runs["train"]["epoch_loss"]))

    # 3. Three runs in one directory: three colours on the overlaid chart.
    d = os.path.join(TMP, "three")
    for k, lr in enumerate(("1e-3", "3e-3", "1e-2")):
        train("--model", "32-16-4", "--epochs", "2", "--lr", lr, "--histogram-every", "0",
              "--logdir", os.path.join(d, "run%d" % k))
    dom, runs = check_report(d, "three runs", pixel_tags=("epoch_loss", "epoch_accuracy"))
    if len({l["stroke"] for l in dom.charts["epoch_loss"]}) != 3:
        fail("three runs: not three colours")
    lrs = [r[dom.rows[0].index("lr")] for r in dom.rows[1:]]
    if len(dom.rows) != 4 or sorted(lrs) != ["0.001", "0.003", "0.01"]:
        fail("three runs: the runs table has %s" % dom.rows)
    ok("three runs: three colours, the table lists each run's lr")
    # Sorting the table by a column, as a click does: numbers by value, both directions.
    report = os.path.join(d, "report.html")
    got = run_in_page(report, "var th=[].filter.call(document.querySelectorAll('#runs th'),"
                      "function(t){return t.textContent==='lr'})[0],rows=function(){return [].map"
                      ".call(document.querySelectorAll('#runs tbody tr'),function(r){return r"
                      ".cells[0].textContent}).join(',')};th.click();result=rows();th.click();"
                      "result+='|'+rows()", ".sort.html")
    if got != "run0,run1,run2|run2,run1,run0":
        fail("sorting the runs table by lr gave %s" % got)
    ok("the runs table sorts by a column, up and down")

    # 4. A regression run: no accuracy chart.
    d = os.path.join(TMP, "regression")
    csv = os.path.join(TMP, "reg.csv")
    with open(csv, "w") as f:
        f.write("a,b,c,y\n")
        for i in range(600):
            a, b, c = (i * 37 % 101) / 50 - 1, (i * 53 % 89) / 44 - 1, (i * 17 % 67) / 33 - 1
            f.write("%.4f,%.4f,%.4f,%.4f\n" % (a, b, c, 0.5 * a - 2 * b + c * c))
    r = subprocess.run([TRAIN, "--data", csv, "--label", "y", "--loss", "mse", "--model",
                        "3-16-1", "--epochs", "3", "--quiet", "--logdir", d],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if r.returncode != 0:
        fail("a regression run: exit %d: %s" % (r.returncode, r.stderr.decode()))
    dom, runs = check_report(d, "a regression run")
    if "epoch_accuracy" in dom.charts:
        fail("a regression run has an accuracy chart")

    # 5. A run still being written: its train file ends inside a record.
    d = os.path.join(TMP, "writing")
    shutil.copytree(os.path.join(TMP, "resumed"), d)
    os.remove(os.path.join(d, "report.html"))
    tdir = os.path.join(d, "train")
    last = sorted(f for f in os.listdir(tdir) if "tfevents" in f)[-1]
    path = os.path.join(tdir, last)
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.truncate(size - 7)
    dom, runs = check_report(d, "a run still being written")
    if not any("being written" in r[-1] for r in dom.rows[1:]):
        fail("a run still being written is not shown as such")

    # 6. A library program's logs (every summary kind), and a damaged file among them.
    d = os.path.join(TMP, "demo")
    subprocess.run([DEMO, d], stdout=subprocess.PIPE, check=True)
    dom, runs = check_report(d, "tb_demo's logs (a library program)", pixel_tags=())
    text = open(os.path.join(d, "report.html"), encoding="utf-8").read()
    for section in ("<h2>Distributions</h2>", "<h2>Images</h2>", "<h2>Text</h2>",
                    "data:image/png;base64,"):
        if section not in text:
            fail("tb_demo's logs: %s is missing" % section)
    bad = os.path.join(d, "train", "events.out.tfevents.9999999999.bad")
    good = sorted(f for f in os.listdir(os.path.join(d, "train")) if "tfevents" in f)[0]
    data = bytearray(open(os.path.join(d, "train", good), "rb").read())
    data[len(data) // 2] ^= 0xFF
    open(bad, "wb").write(data)
    r = subprocess.run([EVENTS, "report", d, "-o", os.path.join(TMP, "bad.html")],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if r.returncode != 1 or "events.out.tfevents.9999999999.bad" not in r.stderr.decode():
        fail("a damaged file: exit %d, %r" % (r.returncode, r.stderr.decode()))
    dom = dom_of(os.path.join(TMP, "bad.html"))
    if not any("9999999999.bad" in p for p in dom.problems) or not dom.charts:
        fail("a damaged file: the report does not name it, or lost the rest")
    ok("a damaged event file: named on stderr and in the report, the rest still drawn")
    os.remove(bad)

    # The docs' screenshot, on request: the default run's report, whole.
    shot = os.environ.get("BRISK_REPORT_SCREENSHOT")
    if shot:
        chrome(["--screenshot=" + shot, "--window-size=1220,1500"],
               os.path.join(TMP, "default", "report.html"))
        ok("screenshot: " + shot)


try:
    main()
finally:
    shutil.rmtree(TMP, ignore_errors=True)
