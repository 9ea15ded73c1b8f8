// SentencePiece unigram segmentation (Kudo 2018): the split of a sentence into vocabulary pieces
// with the highest total log-probability, by Viterbi over the characters. Text is NFKC-normalised,
// and spaces become "▁" with one in front, as the Universal Sentence Encoder's vocabulary expects.
// Characters no piece covers become the unknown id 0 (a run of them, one id).

const SPACE = '\u2581';

interface TrieNode {
  children: Map<string, TrieNode>;
  id: number;
  score: number;
}

const newNode = (): TrieNode => ({ children: new Map(), id: -1, score: 0 });

export class SentencePieceTokenizer {
  private readonly root = newNode();
  readonly unknownId = 0;
  private readonly unknownScore: number;

  /** vocabulary: [piece, log-probability] by id; ids below `reserved` are control symbols. */
  constructor(
    readonly vocabulary: Array<[string, number]>,
    reserved = 6,
  ) {
    let minScore = 0;
    for (let id = reserved; id < vocabulary.length; id++) {
      const [piece, score] = vocabulary[id];
      let node = this.root;
      for (const ch of piece) {
        let next = node.children.get(ch);
        if (!next) {
          next = newNode();
          node.children.set(ch, next);
        }
        node = next;
      }
      node.id = id;
      node.score = score;
      minScore = Math.min(minScore, score);
    }
    // An unknown character costs more than any known piece (as in SentencePiece: min score − 10).
    this.unknownScore = minScore - 10;
  }

  static normalise(text: string): string {
    const t = text.normalize('NFKC');
    return t.length ? SPACE + t.replace(/ /g, SPACE) : t;
  }

  encode(text: string): number[] {
    const chars = [...SentencePieceTokenizer.normalise(text)];
    const n = chars.length;
    // best[i]: best score of chars[0, i); from[i]: where its last piece starts; piece[i]: its id.
    const best = new Float64Array(n + 1).fill(Number.NEGATIVE_INFINITY);
    const from = new Int32Array(n + 1);
    const piece = new Int32Array(n + 1);
    best[0] = 0;
    for (let i = 0; i < n; i++) {
      if (best[i] === Number.NEGATIVE_INFINITY) continue;
      let node: TrieNode | undefined = this.root;
      let matched = false;
      for (let j = i; j < n && node; j++) {
        node = node.children.get(chars[j]);
        if (node && node.id >= 0) {
          matched ||= j === i;
          const s = best[i] + node.score;
          if (s > best[j + 1]) {
            best[j + 1] = s;
            from[j + 1] = i;
            piece[j + 1] = node.id;
          }
        }
      }
      if (!matched) {
        const s = best[i] + this.unknownScore;
        if (s > best[i + 1]) {
          best[i + 1] = s;
          from[i + 1] = i;
          piece[i + 1] = this.unknownId;
        }
      }
    }
    const ids: number[] = [];
    for (let i = n; i > 0; i = from[i]) ids.push(piece[i]);
    ids.reverse();
    // A run of unknown characters is one unknown token.
    return ids.filter((id, k) => !(id === this.unknownId && ids[k - 1] === this.unknownId));
  }

  decode(ids: number[]): string {
    return ids
      .map((id) => (id === this.unknownId ? '\ufffd' : (this.vocabulary[id]?.[0] ?? '')))
      .join('')
      .replace(new RegExp(SPACE, 'g'), ' ')
      .trim();
  }
}
