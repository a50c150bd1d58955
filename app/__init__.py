"""visionserve: the HTTP service that answers /classify and /detect."""
