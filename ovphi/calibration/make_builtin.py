"""Draw the `builtin` sets: calibration, 36 synthetic images (documents, charts, tables, diagrams,
scenes) with instructions in the spirit of `contextual` (describe, read, compare, reason); and
evaluation, 12 other images of the same kinds (other seeds) with caption, OCR and VQA prompts.

Run `python -m ovphi.calibration.make_builtin` to redraw both; the output is deterministic (fixed
seeds, PIL's default bitmap font), so the committed files can be checked against it.
"""
import json
import random
from pathlib import Path

from PIL import Image, ImageDraw

OUT = Path(__file__).with_name("builtin")
EVAL_OUT = Path(__file__).with_name("eval_builtin")
EVAL_PROMPTS = {"caption": "Describe this image in one sentence.", "ocr": "Read all the text in this image."}
WORDS = ("coffee bread milk tea rice apples paper pens soap juice eggs butter cheese salt honey lamp "
         "chair table window river station school market bridge garden").split()
PALETTE = [(220, 60, 60), (60, 140, 220), (60, 180, 90), (240, 180, 40), (150, 80, 200), (40, 40, 40)]


def receipt(rng):
    image = Image.new("RGB", (420, 640), "white")
    draw = ImageDraw.Draw(image)
    draw.text((20, 20), f"SHOP No. {rng.randint(10, 99)}   RECEIPT", fill="black")
    total = 0.0
    for row in range(rng.randint(5, 9)):
        price = rng.randint(50, 999) / 100
        total += price
        draw.text((20, 70 + 30 * row), f"{rng.choice(WORDS):<12} {price:6.2f}", fill="black")
    draw.line((20, 360, 400, 360), fill="black")
    draw.text((20, 375), f"TOTAL {total:8.2f}", fill="black")
    return image, "Read the receipt and give the total amount and the most expensive item."


def bar_chart(rng):
    image = Image.new("RGB", (640, 480), "white")
    draw = ImageDraw.Draw(image)
    draw.line((60, 420, 600, 420), fill="black")
    draw.line((60, 40, 60, 420), fill="black")
    for i in range(rng.randint(3, 7)):
        height = rng.randint(40, 360)
        x = 80 + i * 75
        draw.rectangle((x, 420 - height, x + 50, 420), fill=rng.choice(PALETTE))
        draw.text((x, 425), rng.choice(WORDS)[:6], fill="black")
        draw.text((x + 10, 405 - height), str(height), fill="black")
    return image, "Which bar in the chart is the highest, and by how much does it exceed the lowest one?"


def line_chart(rng):
    image = Image.new("RGB", (700, 420), (250, 250, 245))
    draw = ImageDraw.Draw(image)
    points = [(60 + i * 60, rng.randint(60, 360)) for i in range(11)]
    draw.line(points, fill=rng.choice(PALETTE[:5]), width=3)
    for x, y in points:
        draw.ellipse((x - 4, y - 4, x + 4, y + 4), fill="black")
    draw.text((60, 380), "Months of the year (Jan ... Nov)", fill="black")
    return image, "Describe the trend in this line chart and say when it peaks."


def table(rng):
    image = Image.new("RGB", (600, 400), "white")
    draw = ImageDraw.Draw(image)
    rows, cols = rng.randint(4, 7), 3
    for r in range(rows + 1):
        draw.line((20, 20 + r * 50, 580, 20 + r * 50), fill="black")
    for c in range(cols + 1):
        draw.line((20 + c * 186, 20, 20 + c * 186, 20 + rows * 50), fill="black")
    for c, title in enumerate(["Item", "Count", "Price"]):
        draw.text((30 + c * 186, 35), title, fill="black")
    for r in range(1, rows):
        values = [rng.choice(WORDS), str(rng.randint(1, 40)), f"{rng.randint(1, 90)}.{rng.randint(0, 99):02d}"]
        for c, value in enumerate(values):
            draw.text((30 + c * 186, 35 + r * 50), value, fill="black")
    return image, "Read the table and tell which item has the largest count."


def flow_chart(rng):
    image = Image.new("RGB", (520, 720), "white")
    draw = ImageDraw.Draw(image)
    steps = ["Start"] + [f"Step {i}: {rng.choice(WORDS)}" for i in range(1, rng.randint(3, 5))] + ["End"]
    for i, step in enumerate(steps):
        top = 30 + i * 130
        draw.rounded_rectangle((130, top, 390, top + 70), radius=12, outline="black", width=2)
        draw.text((150, top + 28), step, fill="black")
        if i < len(steps) - 1:
            draw.line((260, top + 70, 260, top + 130), fill="black", width=2)
            draw.polygon([(252, top + 118), (268, top + 118), (260, top + 130)], fill="black")
    return image, "Explain the process shown in this diagram, step by step."


def scene(rng):
    image = Image.new("RGB", (800, 600), (135, 200, 250))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 420, 800, 600), fill=(90, 170, 80))
    draw.ellipse((640, 40, 740, 140), fill=(250, 220, 60))
    for _ in range(rng.randint(1, 3)):
        x = rng.randint(40, 560)
        draw.rectangle((x, 300, x + 160, 440), fill=rng.choice(PALETTE))
        draw.polygon([(x - 10, 300), (x + 170, 300), (x + 80, 220)], fill=(150, 60, 40))
    for _ in range(rng.randint(2, 5)):
        x = rng.randint(0, 760)
        draw.rectangle((x + 12, 380, x + 22, 450), fill=(100, 70, 40))
        draw.ellipse((x - 10, 320, x + 44, 390), fill=(40, 120, 50))
    return image, "Describe the scene in detail: how many houses and trees are there?"


KINDS = [receipt, bar_chart, line_chart, table, flow_chart, scene]


def draw_set(out, variants, prefix="", tasks=None):
    """Draw variants x KINDS images into out with samples.jsonl; tasks cycles the prompt kind
    (None: each kind's own instruction)."""
    out.mkdir(exist_ok=True)
    samples = []
    for variant in range(variants):
        for kind in KINDS:
            rng = random.Random(f"{prefix}{kind.__name__}-{variant}")
            image, instruction = kind(rng)
            name = f"{kind.__name__}_{variant}.png"
            image.save(out / name, optimize=True)
            sample = {"image": name, "instruction": instruction}
            if tasks:
                task = tasks[len(samples) % len(tasks)]
                sample = {"image": name, "task": task, "instruction": EVAL_PROMPTS.get(task, instruction)}
            samples.append(sample)
    with open(out / "samples.jsonl", "w") as f:
        f.writelines(json.dumps(sample) + "\n" for sample in samples)
    print(f"{len(samples)} samples written to {out}")


def main():
    draw_set(OUT, 6)
    draw_set(EVAL_OUT, 2, prefix="eval-", tasks=["caption", "ocr", "vqa"])


if __name__ == "__main__":
    main()
