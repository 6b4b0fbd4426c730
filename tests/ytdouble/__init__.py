"""An offline YouTube for the tests, at the yt-dlp boundary: a deterministic world of videos
(:mod:`.world`) served over loopback HTTP in the shapes YouTube answers yt-dlp with (:mod:`.search`:
innertube search JSON), so yt-dlp's own extractors, request machinery and errors run for real."""
