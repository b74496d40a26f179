"""Routes: which messages go where, through which mapping, with which retry policy and lane."""
