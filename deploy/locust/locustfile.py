"""Locust load test for TradeServe, for teams whose load tests are written in Locust.

The request mix is `tradeserve loadtest`'s: POST /api/v1/predict with {"symbol": S} (plus the
optional extra fields), S cycling through the same ten symbols in order; a 200 (decision) or a
403 (decision rejected by risk checks) is a success, anything else a failure.

    locust -f deploy/locust/locustfile.py --host http://127.0.0.1:8080 \
        --headless --users 50 --spawn-rate 50 --run-time 1m

Environment:
    TRADESERVE_API_KEY   sent as "Authorization: Bearer <key>" (a key with the trader role)
    TRADESERVE_EXTRA     JSON object merged into every body, e.g. '{"risk_check": false}'
    TRADESERVE_RATE      requests per second per user (default 10; 0 = as fast as possible)
    TRADESERVE_SYMBOLS   comma-separated symbols (default the load generator's ten)

Locust is closed-loop: a user waits for its answer before the next request, so a slow server
is sent less (coordinated omission). For latency figures at a fixed offered rate use the
project's open-loop `tradeserve loadtest`; use this to fit a desk's existing Locust setup.
"""

import itertools
import json
import os
import threading

from locust import FastHttpUser, constant_throughput, task

SYMBOLS = os.environ.get(
    "TRADESERVE_SYMBOLS", "AAPL,MSFT,NVDA,AMZN,GOOGL,META,TSLA,JPM,SPY,QQQ"
).split(",")
EXTRA = json.loads(os.environ.get("TRADESERVE_EXTRA", "{}"))
RATE = float(os.environ.get("TRADESERVE_RATE", "10"))
KEY = os.environ.get("TRADESERVE_API_KEY")

# One sequence shared by every user, as the load generator cycles one list of bodies.
_bodies = itertools.cycle([json.dumps({**EXTRA, "symbol": s}) for s in SYMBOLS])
_lock = threading.Lock()


def next_body() -> str:
    with _lock:
        return next(_bodies)


class Trader(FastHttpUser):
    wait_time = constant_throughput(RATE) if RATE > 0 else (lambda self: 0)

    def on_start(self):
        self.headers = {"content-type": "application/json"}
        if KEY:
            self.headers["authorization"] = f"Bearer {KEY}"

    @task
    def predict(self):
        with self.client.post(
            "/api/v1/predict",
            data=next_body(),
            headers=self.headers,
            name="/api/v1/predict",
            catch_response=True,
        ) as r:
            if r.status_code in (200, 403):
                r.success()
            else:
                r.failure(f"HTTP {r.status_code}: {r.text[:200] if r.text else ''}")
