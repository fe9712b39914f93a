"""The HTTP service: `leadledger serve` (FastAPI on uvicorn). See README, "Run the service"."""
