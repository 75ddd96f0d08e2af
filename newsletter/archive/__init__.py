"""The public archive of published issues: the same pages as static files (`newsletter archive`,
`build_archive`) and through `newsletter serve` (`ArchiveSite`).

- `pages.py`: `ArchiveSite`, the index and each issue's web version with its preview card,
  previous/next links and sign-up form (theme templates `archive/`).
- `feeds.py`: Atom 1.0 (feedgen), JSON Feed 1.1, sitemap.xml and robots.txt.
- `output.py`: the incremental, atomic writer of a folder of files.
- `build.py`: `build_archive(config, out, clean=)`, the static site.
"""
