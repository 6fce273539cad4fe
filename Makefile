# Two commands do everything on a fresh machine with Python 3.10+:
#   make book   set up .venv, execute every chapter of _toc.yml on the synthetic default, build _build/html
#   make test   set up .venv and run the whole test suite (unit tests, chapters by papermill, rendered book)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.echobook-installed

.PHONY: install book test nbval lab student clean-book

install: $(INSTALLED)

$(INSTALLED): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[book,dev]"
	touch $@

# The size follows $$ECHOBOOK_SIZE (e.g. `make book ECHOBOOK_SIZE=smoke`); unset, it is `full` on a GPU
# and `small` on a CPU. `echobook book-execute` runs the chapters not yet in Jupyter Book's execution cache,
# two at a time on a CPU (BOOK_JOBS=1 for one), so that the build only renders; each chapter's seconds go to
# _build/chapter-seconds.csv. Unchanged chapters come from the cache.
BOOK_JOBS ?=
book: $(INSTALLED)
	$(PY) -m echobook.cli book-execute $(if $(BOOK_JOBS),--jobs $(BOOK_JOBS))
	$(VENV)/bin/jupyter-book build . --builder html

test: $(INSTALLED)
	$(PY) -m pytest

# nbval over the stored notebooks (a second execution of what `make test` already runs on the reader's path)
nbval: $(INSTALLED)
	ECHOBOOK_SIZE=smoke $(PY) -m pytest --nbval-lax --nbval-current-env --nbval-cell-timeout=600 book/

lab: $(INSTALLED)
	$(VENV)/bin/jupyter lab book/

# The student edition in $(STUDENT_DIR): the chapters without their solutions, a stub and a check per exercise;
# `make student NBGRADER=1` writes nbgrader source notebooks instead (see the preface, "In a classroom")
STUDENT_DIR ?= student
student: $(INSTALLED)
	$(VENV)/bin/echobook student $(STUDENT_DIR) $(if $(NBGRADER),--nbgrader)

clean-book:
	rm -rf _build
