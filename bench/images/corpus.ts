/**
 * The benchmark corpus: real photographs from Debian's wallpaper packages, downloaded with apt-get and
 * unpacked into a cache directory (never committed). Only photographs are listed: the packages also
 * hold illustrations, which compress very differently. Checked and found to hold no further real
 * photographs ≥ 3000 px wide: plasma-workspace-wallpapers, gnome-backgrounds, mate-backgrounds,
 * ukui-wallpapers, lomiri-wallpapers, xfdesktop4-data and desktop-base (illustrations or paintings).
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const PACKAGES = ["lomiri-wallpapers-16.04", "lomiri-wallpapers-20.04", "lxqt-themes"];

/**
 * Photographs whose long side is at least 3000 px: 12 landscape ≥ 3000 px wide (lxqt-themes ships three
 * of its four as PNG), and 2 portrait ≥ 3000 px tall.
 */
export const PHOTOS = [
  "lomiri-wallpapers-16.04/usr/share/backgrounds/Bridge_by_Sander_Klootwijk.jpg",
  "lomiri-wallpapers-16.04/usr/share/backgrounds/Dragonfly_by_Bolly.jpg",
  "lomiri-wallpapers-16.04/usr/share/backgrounds/aitzgorri_by_Aitzol_Berasategi.jpg",
  "lomiri-wallpapers-16.04/usr/share/backgrounds/life_by_Aitzol_Berasategi.jpg",
  "lomiri-wallpapers-16.04/usr/share/backgrounds/picosdeeuropa_by_Aitzol_Berasategi.jpg",
  "lomiri-wallpapers-16.04/usr/share/backgrounds/seeding_by_Clements_Engelhardt.jpg",
  "lomiri-wallpapers-16.04/usr/share/backgrounds/sunset_by_Aitzol_Berasategi.jpg",
  "lomiri-wallpapers-20.04/usr/share/backgrounds/Kleiber_by_Lukas_Baubkus.jpg",
  "lxqt-themes/usr/share/lxqt/wallpapers/after-the-rain.jpg",
  "lxqt-themes/usr/share/lxqt/wallpapers/appleflower.png",
  "lxqt-themes/usr/share/lxqt/wallpapers/butterfly.png",
  "lxqt-themes/usr/share/lxqt/wallpapers/flowers.png",
  "lomiri-wallpapers-16.04/usr/share/backgrounds/friends_by_Aitzol_Berasategi.jpg",
  "lomiri-wallpapers-16.04/usr/share/backgrounds/Wine_by_Jakkub_Mede.jpg",
];

export function corpusDir(): string {
  return process.env.EDGEWAY_IMAGE_CORPUS ?? join(tmpdir(), "edgeway-image-corpus");
}

function run(cmd: string, args: string[], cwd?: string): void {
  execFileSync(cmd, args, { cwd, stdio: ["ignore", "ignore", "inherit"] });
}

/** Downloads and unpacks the wallpaper packages if needed; returns the photo paths. */
export function ensureCorpus(): string[] {
  const dir = corpusDir();
  const paths = PHOTOS.map((p) => join(dir, p));
  if (paths.every((p) => existsSync(p))) return paths;
  mkdirSync(join(dir, "debs"), { recursive: true });
  const download = () => run("apt-get", ["download", ...PACKAGES], join(dir, "debs"));
  try {
    download();
  } catch {
    run("apt-get", ["update"]);
    download();
  }
  for (const deb of readdirSync(join(dir, "debs"))) {
    const pkg = deb.split("_")[0]!;
    mkdirSync(join(dir, pkg), { recursive: true });
    run("dpkg-deb", ["-x", join(dir, "debs", deb), join(dir, pkg)]);
  }
  const missing = paths.filter((p) => !existsSync(p));
  if (missing.length) throw new Error(`corpus files missing after unpacking: ${missing.join(", ")}`);
  return paths;
}
