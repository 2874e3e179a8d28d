/**
 * How often each tenant asked for a session lately: a count-min sketch of 4-bit counters behind a
 * doorkeeper, aged by halving. The wallet cache's admission compares these estimates (TinyLFU,
 * Einziger, Friedman and Manes, 2017).
 *
 * - A key's first sighting in a sample only sets its doorkeeper bits (a Bloom filter); later ones
 *   count in the sketch. So the one-off tenants of a scan cost no counter, and the estimate of a
 *   key is its sketch minimum plus one if the doorkeeper holds it.
 * - Every `sampleSize` additions all counters halve and the doorkeeper clears: old popularity
 *   fades, and a shifted hot set overtakes the old one within a sample or two.
 * - The hash is seeded per sketch, so tenant IDs chosen to collide with a hot tenant cannot be
 *   computed ahead of time.
 *
 * - It sizes itself to the tenants in use: at each aging the doorkeeper's bits count the distinct
 *   keys of the sample (linear counting), and when they outnumber the keys it is sized for, it
 *   doubles (forgetting its counts, as a resize must). A sample is 10 × its size, so the size stays
 *   within the distinct tenants of 10 × that many sessions: it follows the working set, not the
 *   registry.
 *
 * Memory: 4 bytes of counters (one per row) and 1 byte of doorkeeper per key it is sized for, up
 * to 2^21 keys (10 MiB).
 */

/** Counters saturate here (4 bits). */
const MAX_COUNT = 15;
const DEPTH = 4;
const MAX_KEYS = 1 << 21;

export class FrequencySketch {
  #table: Uint8Array = new Uint8Array(0);
  #door: Uint32Array = new Uint32Array(0);
  #mask = 0;
  #doorMask = 0;
  #additions = 0;
  #sampleSize = 0;
  #capacity = 0;
  readonly #seeds: Uint32Array;

  constructor(expectedKeys: number, random: () => number) {
    this.#seeds = Uint32Array.from({ length: DEPTH + 1 }, () => (random() * 0x1_0000_0000) >>> 0);
    this.ensureCapacity(expectedKeys);
  }

  /** Additions between two agings. */
  get sampleSize(): number {
    return this.#sampleSize;
  }

  /** The keys it is sized for. */
  get capacity(): number {
    return this.#capacity;
  }

  /** Bytes of counters and doorkeeper held. */
  get bytes(): number {
    return this.#table.byteLength + this.#door.byteLength;
  }

  /** Grows (never shrinks) to estimate `keys` keys well; growing forgets what it counted. */
  ensureCapacity(keys: number): void {
    const wanted = ceilPowerOfTwo(Math.max(64, Math.min(keys, MAX_KEYS)));
    if (wanted <= this.#capacity) return;
    this.#capacity = wanted;
    const width = wanted;
    this.#table = new Uint8Array(width * DEPTH);
    this.#mask = width - 1;
    // 8 doorkeeper bits per key, two probes: about 5% false positives at capacity.
    this.#door = new Uint32Array(wanted / 4);
    this.#doorMask = wanted * 8 - 1;
    this.#sampleSize = 10 * wanted;
    this.#additions = 0;
  }

  /** The key's estimated count in the current sample, 0 to 16. */
  frequency(hash: number): number {
    let min = MAX_COUNT;
    for (let row = 0; row < DEPTH; row++) min = Math.min(min, this.#table[this.#index(hash, row)]!);
    return min + (this.#doorHas(hash) ? 1 : 0);
  }

  /** One more sighting of the key. */
  increment(hash: number): void {
    if (!this.#doorHas(hash)) {
      this.#doorAdd(hash);
    } else {
      for (let row = 0; row < DEPTH; row++) {
        const at = this.#index(hash, row);
        if (this.#table[at]! < MAX_COUNT) this.#table[at]!++;
      }
    }
    if (++this.#additions >= this.#sampleSize) this.#age();
  }

  /** A 32-bit hash of a key under this sketch's seed (FNV-1a over UTF-16 units, then a finaliser). */
  hash(key: string): number {
    let h = this.#seeds[DEPTH]! ^ 0x811c9dc5;
    for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193);
    return mix(h);
  }

  #index(hash: number, row: number): number {
    return (row * (this.#mask + 1) + (mix(hash ^ this.#seeds[row]!) & this.#mask)) >>> 0;
  }

  #doorBits(hash: number): [number, number] {
    const h = mix(hash + 0x9e3779b9);
    return [h & this.#doorMask, (h >>> 16 ^ Math.imul(h, 0x85ebca6b)) & this.#doorMask];
  }

  #doorHas(hash: number): boolean {
    for (const bit of this.#doorBits(hash)) if ((this.#door[bit >>> 5]! & (1 << (bit & 31))) === 0) return false;
    return true;
  }

  #doorAdd(hash: number): void {
    for (const bit of this.#doorBits(hash)) this.#door[bit >>> 5]! |= 1 << (bit & 31);
  }

  #age(): void {
    if (this.#capacity < MAX_KEYS && this.#distinctInSample() > this.#capacity) {
      this.ensureCapacity(this.#capacity * 2);
      return;
    }
    for (let i = 0; i < this.#table.length; i++) this.#table[i]! >>>= 1;
    this.#door.fill(0);
    this.#additions = 0;
  }

  /** Distinct keys added to the doorkeeper this sample, by linear counting over its bits (two per key). */
  #distinctInSample(): number {
    let set = 0;
    for (const word of this.#door) set += popcount(word);
    const bits = this.#doorMask + 1;
    return set >= bits ? Number.POSITIVE_INFINITY : (-bits / 2) * Math.log(1 - set / bits);
  }
}

function mix(x: number): number {
  let h = x >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

function popcount(x: number): number {
  let v = x - ((x >>> 1) & 0x55555555);
  v = (v & 0x33333333) + ((v >>> 2) & 0x33333333);
  return (Math.imul((v + (v >>> 4)) & 0x0f0f0f0f, 0x01010101) >>> 24);
}

function ceilPowerOfTwo(n: number): number {
  return 2 ** Math.ceil(Math.log2(n));
}
