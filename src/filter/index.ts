/*
 * The filter language: parse (text -> immutable AST), compile (AST + bucket
 * -> index-stage WHERE clause with $n parameters), match (AST + bucket ->
 * exact-stage JavaScript predicate).  See each module's header.
 *
 *   findObjects:    parseFilter -> [assertUsableIndexes if required]
 *                   -> compileFilter -> SQL -> compileMatcher on each row
 *   update/delete:  parseFilter -> compileIndexStageOnly -> SQL
 */

export {
    type AndNode, type ApproxNode, type EqualNode, type ExtNode, type FilterNode, type GeNode,
    type LeafNode, type LeNode, type NotNode, type OrNode, type PresentNode, type SubstringNode,
    type SubstringPieces, escapeFilterValue, filterToString, forEachNode, isLeaf,
} from './ast';
export { parseFilter } from './parse';
export {
    type CompileOptions, type CompiledWhere, type SortKey, type UsableIndexReport,
    DEFAULT_LIMIT, INTERNAL_FIELDS, assertUsableIndexes, checkUsableIndexes, compileFilter,
    compileIndexStageOnly, decorateFilter, quoteIdent,
} from './compile';
export { type RecordMatcher, compileMatcher, getAttrValue } from './match';
