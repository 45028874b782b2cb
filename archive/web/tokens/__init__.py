"""Bearer tokens of ``usarchive web`` (model, store and SQL of one domain)."""

from archive.web.tokens.store import TOKEN_PREFIX, Role, TokenInfo, TokenStore, hash_secret

__all__ = ["TOKEN_PREFIX", "Role", "TokenInfo", "TokenStore", "hash_secret"]
