"""Resolvers: how a leg turns its URL's host into the addresses it connects to."""
