"""HTTP routes: validate, call one service function, return a schema."""
