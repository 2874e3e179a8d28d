/** What a record query means, evaluated in plain JavaScript on one record's tags: the reference the wallets' SQL is checked against. */
import type { QueryNode } from '../common/query.js';

export type Tags = Record<string, string>;

export function matches(node: QueryNode | null, tags: Tags): boolean {
  if (node === null) return true;
  const has = (name: string): boolean => Object.hasOwn(tags, name);
  switch (node.op) {
    case 'and':
      return node.children.every((c) => matches(c, tags));
    case 'or':
      return node.children.some((c) => matches(c, tags));
    case 'not':
      return !matches(node.child, tags);
    case 'in':
      return has(node.name) && node.values.includes(tags[node.name]!);
    case 'eq':
      return has(node.name) && tags[node.name] === node.value;
    case 'neq':
      return has(node.name) && tags[node.name] !== node.value;
    case 'gt':
      return has(node.name) && tags[node.name]! > node.value;
    case 'gte':
      return has(node.name) && tags[node.name]! >= node.value;
    case 'lt':
      return has(node.name) && tags[node.name]! < node.value;
    case 'lte':
      return has(node.name) && tags[node.name]! <= node.value;
    case 'like': {
      const pattern = new RegExp(`^${node.value.replace(/[.*+?^${}()|[\]\\]/g, '\\$&').replace(/%/g, '.*').replace(/_/g, '.')}$`, 'is');
      return has(node.name) && pattern.test(tags[node.name]!);
    }
  }
}

