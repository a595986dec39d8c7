;;; test.el --- end-to-end test of quill.el with eglot and the quill server -*- lexical-binding: t; -*-

;; Run by run.sh: emacs --batch -l test.el (not -Q: Debian's elpa-eglot loads from
;; site-start).  Prints "all emacs checks passed" only when every check passed, and exits
;; non-zero otherwise.

(require 'cl-lib)
(require 'subr-x)

(defvar qt-repo (or (getenv "QUILL_REPO") (error "QUILL_REPO is not set")))
(defvar qt-bin (or (getenv "QUILL_BIN") (error "QUILL_BIN is not set")))
(defvar qt-dir (file-name-as-directory (or (getenv "QUILL_TEST_DIR") (error "QUILL_TEST_DIR is not set"))))

(add-to-list 'load-path (expand-file-name "editors/emacs" qt-repo))
(require 'quill)

(defconst qt-harbour "The harbour town woke early. Before the sun was up, the bakers had lit their ovens, the fishermen were loading nets onto their boats, and the first bus of the day was waiting outside the station with its engine running.")
(defconst qt-harbour-summary "pe plan pelow A pe fre balq whe pe Daqp hotel house bal home cha hotel")
(defconst qt-cafe "We sat in the café and ordered coffee. It was good.")
(defconst qt-prompt "The quick brown fox")

(setq quill-program qt-bin
      quill-settings
      `(:model ,(expand-file-name "tests/fixtures/gpt2-tiny" qt-repo)
        :t5Model ,(expand-file-name "tests/fixtures/t5-tiny" qt-repo)
        :completion (:temperature 0 :numSuggestions 1 :maxTokens 8 :stopAtSentence :json-false)
        :diagnostics (:minTokenLogprob -25 :minAlternativeGap 8 :maxSentencePerplexity 1e12
                      :debounceMs 50)
        :t5 (:maxTokens 20)))
(quill-setup)
(setq eglot-sync-connect 60
      eglot-connect-timeout 60
      eglot-autoshutdown nil
      inhibit-message nil
      make-backup-files nil
      auto-save-default nil
      create-lockfiles nil)

(defvar qt-start (float-time))
(defun qt-log (fmt &rest args)
  (princ (format "%5.1fs %s\n" (- (float-time) qt-start) (apply #'format fmt args))))

(defun qt-wait (what secs pred)
  "Wait up to SECS for PRED to return non-nil, serving the server's messages."
  (let ((deadline (+ (float-time) secs)) result)
    (while (not (setq result (funcall pred)))
      (when (> (float-time) deadline)
        (error "timed out waiting for %s" what))
      (accept-process-output nil 0.05))
    result))

(defun qt-check (cond fmt &rest args)
  (unless cond (error "%s" (apply #'format fmt args))))

(defun qt-eq (expected got what)
  (unless (equal expected got)
    (error "%s: expected %S, got %S" what expected got)))

(defun qt-open (name text)
  "Visit a new file NAME holding TEXT, managed by quill."
  (let ((path (expand-file-name name qt-dir)))
    (with-temp-file path (insert text))
    (find-file path)
    (unless (eglot-current-server)
      (apply #'eglot (eglot--guess-contact)))
    (qt-wait "eglot to manage the buffer" 60
             (lambda () (and (eglot-current-server) (bound-and-true-p eglot--managed-mode))))
    (current-buffer)))

(defun qt-cli-complete (prompt)
  "The continuation `quill complete --json' prints for PROMPT."
  (with-temp-buffer
    (let* ((process-environment (cons "HF_HUB_OFFLINE=1" process-environment))
           (code (call-process qt-bin nil (list t nil) nil "complete" "--model"
                               (expand-file-name "tests/fixtures/gpt2-tiny" qt-repo)
                               "--max-tokens" "8" "--json" prompt)))
      (qt-eq 0 code "quill complete exit code")
      (goto-char (point-min))
      (let ((json (json-parse-buffer :object-type 'plist)))
        (plist-get (aref (plist-get json :completions) 0) :text)))))

(defvar qt-failures 0)
(defvar qt-stop nil)
(defmacro qt-test (name &rest body)
  (declare (indent 1))
  `(unless qt-stop
     (condition-case err
         (progn ,@body (qt-log "ok   %s" ,name))
       (error
        (setq qt-failures (1+ qt-failures) qt-stop t)
        (qt-log "FAIL %s" ,name)
        (qt-log "     %s" (error-message-string err))))))

;;;; The tests

(defvar qt-statuses nil "Every `quill-status' seen, newest first.")
(add-hook 'quill-status-change-hook (lambda () (push (quill-status) qt-statuses)))

(qt-test "quill-setup registers the server; eglot connects with the settings"
  (qt-check (cl-some (lambda (e) (eq (cdr-safe e) #'quill--contact)) eglot-server-programs)
            "quill is not in eglot-server-programs")
  (qt-open "cafe.txt" (concat qt-cafe "\n"))
  (qt-check (cl-typep (eglot-current-server) 'quill-eglot-server) "the server is not quill's class")
  (qt-eq "plaintext" (eglot--language-id (eglot-current-server)) "languageId of text-mode")
  (qt-wait "quill-status to say ready" 60 (lambda () (equal (quill-status) "quill: ready")))
  (qt-check (cl-some (lambda (s) (string-match-p "\\`quill: loading [0-9]+%\\'" s)) qt-statuses)
            "quill-status never said loading: %S" qt-statuses)
  ;; eglot's didChangeConfiguration after connecting must not reset the settings (which
  ;; would load the default hub model, offline here, and report an error).
  (qt-check (not (member "quill: error" qt-statuses)) "quill reported an error: %S" qt-statuses))

(qt-test "flymake shows quill's unlikely-word diagnostics on the café paragraph"
  (let ((diags (qt-wait "flymake diagnostics" 60
                        (lambda ()
                          (flymake-start)
                          (accept-process-output nil 0.1)
                          (flymake-diagnostics)))))
    (qt-log "     %d diagnostics: %S" (length diags)
            (mapcar (lambda (d) (buffer-substring (flymake-diagnostic-beg d) (flymake-diagnostic-end d)))
                    diags))
    (qt-check (cl-every (lambda (d) (eq (flymake-diagnostic-backend d) 'eglot-flymake-backend)) diags)
              "diagnostics from another backend")
    ;; Prefer a word after "café" (there byte and character columns differ): fix it with
    ;; quill-fix-at-point, which applies the preferred quick fix.
    (let* ((after (+ (point-min) (string-match "é" qt-cafe) 1))
           (d (or (cl-find-if (lambda (d) (>= (flymake-diagnostic-beg d) after))
                              (sort (copy-sequence diags)
                                    (lambda (a b) (< (flymake-diagnostic-beg a) (flymake-diagnostic-beg b)))))
                  (car diags)))
           (beg (flymake-diagnostic-beg d))
           (end (flymake-diagnostic-end d))
           (word (buffer-substring-no-properties beg end))
           (before (buffer-substring-no-properties (point-min) (line-end-position))))
      (goto-char beg)
      (let* ((title (quill-fix-at-point))
             (alt (and (string-match "\\`Replace with '\\(.*\\)'\\'" title) (match-string 1 title))))
        (qt-check alt "unexpected fix title %S" title)
        (qt-eq (concat (substring before 0 (- beg (point-min))) alt
                       (substring before (- end (point-min))))
               (buffer-substring-no-properties (point-min) (line-end-position))
               "the line after the quick fix")
        (qt-log "     replaced %S with %S" word alt)))))

(qt-test "eglot-completion-at-point offers the greedy continuation (= quill complete)"
  (qt-open "ghost.txt" qt-prompt)
  (goto-char (point-max))
  (let* ((want (concat "fox" (qt-cli-complete qt-prompt)))
         (capf (eglot-completion-at-point))
         (beg (nth 0 capf)) (end (nth 1 capf)) (table (nth 2 capf))
         (exit (plist-get (nthcdr 3 capf) :exit-function))
         (cands (all-completions (buffer-substring-no-properties beg end) table))
         (cand (cl-find-if (lambda (c)
                             (equal (plist-get (plist-get (get-text-property 0 'eglot--lsp-item c) :textEdit)
                                               :newText)
                                    want))
                           cands)))
    (qt-log "     candidates: %S" (mapcar #'substring-no-properties cands))
    (qt-check cand "no candidate whose textEdit is %S: %S" want cands)
    ;; What completion-in-region does: insert the candidate, then run the exit function,
    ;; which applies the item's textEdit.
    (delete-region beg end)
    (goto-char beg)
    (insert cand)
    (when exit (funcall exit cand 'finished))
    (qt-eq (concat "The quick brown " want) (buffer-substring-no-properties (point-min) (point-max))
           "buffer after choosing the completion")))

(qt-test "quill-summarize-region returns the reference summary; i inserts it below"
  (qt-open "harbour.txt" (concat "Morning\n\n" qt-harbour "\n\nThe end.\n"))
  (goto-char (point-min))
  (forward-line 2)
  (let* ((beg (line-beginning-position)) (end (line-end-position))
         (summary (quill-summarize-region beg end)))
    (qt-eq qt-harbour-summary summary "summary")
    (qt-eq qt-harbour-summary (with-current-buffer "*quill*" (buffer-string)) "the *quill* buffer")
    (with-current-buffer "*quill*" (quill-result-insert-below))
    (qt-eq (concat "Morning\n\n" qt-harbour "\n\n" qt-harbour-summary "\n\nThe end.\n")
           (buffer-string) "buffer after inserting the summary")))

(qt-test "quill-translate-region and quill-ask give what workspace/executeCommand gives; r replaces"
  (let* ((server (eglot-current-server))
         (uri (plist-get (eglot--TextDocumentIdentifier) :uri))
         (range (quill--range (point-min) (save-excursion (goto-char (point-min)) (line-end-position))))
         (direct (jsonrpc-request server :workspace/executeCommand
                                  (list :command "quill.translate"
                                        :arguments (vector (list :uri uri :to "French" :range range)))))
         (got (quill-translate-region (point-min)
                                      (save-excursion (goto-char (point-min)) (line-end-position))
                                      "French")))
    (qt-eq (plist-get direct :translation) got "translation")
    (with-current-buffer "*quill*" (quill-result-replace))
    (qt-eq got (buffer-substring-no-properties (point-min) (save-excursion (goto-char (point-min)) (line-end-position)))
           "first line after r")
    (eglot--signal-textDocument/didChange) ; the replacement, before asking directly
    (let ((direct (jsonrpc-request server :workspace/executeCommand
                                   (list :command "quill.answer"
                                         :arguments (vector (list :uri uri :question "Who lit the ovens?"))))))
      (qt-eq (plist-get direct :answer) (quill-ask "Who lit the ovens?") "answer"))))

(qt-test "the server shuts down cleanly"
  (let ((server (eglot-current-server)))
    (eglot-shutdown server)
    (qt-wait "the server process to exit" 20
             (lambda () (not (process-live-p (jsonrpc--process server)))))))

(if (> qt-failures 0)
    (progn
      (qt-log "emacs checks FAILED")
      (let ((events (cl-find-if (lambda (b) (string-match-p "EGLOT.*events" (buffer-name b))) (buffer-list))))
        (when events
          (with-current-buffer events
            (princ (buffer-substring-no-properties (max (point-min) (- (point-max) (string-to-number (or (getenv "QUILL_EVENTS_TAIL") "4000")))) (point-max))))))
      (kill-emacs 1))
  (qt-log "all emacs checks passed")
  (kill-emacs 0))

;;; test.el ends here
