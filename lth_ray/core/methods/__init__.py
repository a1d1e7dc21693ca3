"""Member policies: where each method's mask comes from and where its training starts."""
