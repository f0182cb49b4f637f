// Checks an annotation sheet (annotations.html from the `annotate` example) in headless Chromium:
// the first word's attention map is drawn over each photo at load, hovering and clicking another
// word draws that word's map instead, and the words are coloured as the truth says.
//
// Run through scripts/sheet_check.sh, which installs playwright-core and passes:
//   node sheet_check.mjs SHEET.html OUT_DIR
// Writes OUT_DIR/sheet_loaded.png and OUT_DIR/sheet_clicked.png; exits 1 with the failed checks.
import { chromium } from "playwright-core";
import { pathToFileURL } from "node:url";
import { resolve } from "node:path";

const [sheet, out] = process.argv.slice(2);
const failures = [];
const check = (ok, what) => {
  console.log(`${ok ? "ok  " : "FAIL"} ${what}`);
  if (!ok) failures.push(what);
};

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  // The machine's network is closed: without these, Chromium retries its own services.
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
const page = await browser.newPage({ viewport: { width: 1000, height: 760 } });
const errors = [];
page.on("pageerror", (e) => errors.push(String(e)));
await page.goto(pathToFileURL(resolve(sheet)).href);
await page.waitForLoadState("load");
check(errors.length === 0, `no script error (${errors.join("; ") || "none"})`);

// The state of one figure: which word is underlined, what its canvas holds, how many of the
// canvas's cells are drawn.
const figureState = (index) =>
  page.evaluate((i) => {
    const f = document.querySelectorAll("figure")[i];
    const c = f.querySelector("canvas");
    const on = f.querySelector(".on");
    const pixels = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
    let drawn = 0;
    for (let p = 3; p < pixels.length; p += 4) drawn += pixels[p] > 0 ? 1 : 0;
    return {
      on: on ? on.textContent : null,
      cells: `${c.width}x${c.height}`,
      drawn,
      image: c.toDataURL(),
      words: [...f.querySelectorAll("[data-map]")].map((s) => s.textContent),
    };
  }, index);

const figures = await page.locator("figure").count();
const withMaps = await page.locator("figure canvas").count();
check(figures > 0 && withMaps === figures, `${withMaps} of ${figures} photos carry a map canvas`);

// A figure with at least two mapped words, to switch between them.
let index = -1;
for (let i = 0; i < figures && index < 0; i++) {
  if ((await figureState(i)).words.length >= 2) index = i;
}
check(index >= 0, "a photo with two or more predicted words");
if (index >= 0) {
  const loaded = await figureState(index);
  check(loaded.on === loaded.words[0], `at load the first word is shown (${loaded.on})`);
  check(loaded.drawn > 0, `at load its map is drawn (${loaded.drawn} cells of ${loaded.cells})`);
  await page.screenshot({ path: `${out}/sheet_loaded.png` });

  const words = page.locator("figure").nth(index).locator("[data-map]");
  await words.nth(1).hover();
  const hovered = await figureState(index);
  check(hovered.on === loaded.words[1], `hover shows the second word (${hovered.on})`);
  check(hovered.image !== loaded.image, "hover draws a different map");

  await words.nth(0).click();
  const clicked = await figureState(index);
  check(clicked.on === loaded.words[0], `click shows the first word again (${clicked.on})`);
  check(clicked.image === loaded.image, "and draws its map again, as at load");
  await words.nth(1).hover();
  await page.screenshot({ path: `${out}/sheet_clicked.png` });
}

// Colours: hits green and bold, wrong words orange, missed truth struck out in red.
const styles = await page.evaluate(() =>
  Object.fromEntries(
    ["hit", "wrong", "miss"].map((cls) => {
      const e = document.querySelector(`.${cls}`);
      const s = e && getComputedStyle(e);
      return [cls, s ? { color: s.color, line: s.textDecorationLine, n: document.querySelectorAll(`.${cls}`).length } : null];
    }),
  ),
);
console.log(JSON.stringify(styles));
check(styles.hit?.color === "rgb(0, 102, 51)", "correct words are green");
check(styles.wrong?.color === "rgb(187, 85, 0)", "wrong words are orange");
check(styles.miss?.color === "rgb(170, 0, 0)" && styles.miss?.line === "line-through",
  "missed words are struck out in red");

await browser.close();
if (failures.length) {
  console.error(`${failures.length} check(s) failed`);
  process.exit(1);
}
console.log("sheet checks passed");
