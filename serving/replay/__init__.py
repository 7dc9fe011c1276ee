"""Traffic replay: held-out interactions as users against the router (``marquee traffic``)."""
