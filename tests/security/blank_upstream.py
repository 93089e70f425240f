"""A catch-all upstream for abuse tests: any method on any path gets ``200 {"ok": true}``
(JSON, no usage), and nothing it receives can make it fail. It counts what it received."""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import web


@dataclass
class BlankUpstream:
    url: str = ""
    paths: list[str] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self.answer)
        return app

    async def answer(self, request: web.Request) -> web.Response:
        self.paths.append(request.raw_path)
        await request.read()
        return web.json_response({"ok": True, "model": "test-model"})
