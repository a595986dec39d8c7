;;; quill.el --- GPT-2 completions, unlikely-word diagnostics and T5 commands via eglot -*- lexical-binding: t; -*-

;; Author: the quill authors
;; Version: 0.1.0
;; Package-Requires: ((emacs "28.1") (eglot "1.9"))
;; Keywords: tools, languages, wp
;; URL: https://github.com/quill-lsp/quill

;;; Commentary:

;; quill is a language server that puts GPT-2 (completions, "unlikely word" diagnostics
;; with quick fixes) and T5 (summarize, answer, translate) into editors.  This file
;; registers it with eglot and adds commands for the T5 side:
;;
;;   (add-to-list 'load-path "/path/to/quill/editors/emacs")
;;   (require 'quill)
;;   (setq quill-settings '(:model "openai-community/gpt2"
;;                          :completion (:numSuggestions 3)))
;;   (quill-setup)                 ; text, markdown, git commit, rst, LaTeX buffers
;;   ;; (setq quill-prog-modes t)  ; before quill-setup: also programming modes (comments)
;;   (add-hook 'text-mode-hook #'eglot-ensure)
;;
;; - Diagnostics appear through flymake; `quill-fix-at-point' (or M-x eglot-code-actions)
;;   applies the model's best replacement for a flagged word.
;; - Completions: `completion-at-point' (C-M-i) offers the model's continuations.
;; - `quill-summarize-region', `quill-ask', `quill-translate-region' show the result in a
;;   *quill* buffer; there `i' inserts it below the region, `r' replaces the region, `w'
;;   copies it and `q' quits.
;; - `quill-status' gives "quill: loading 40%", "quill: ready", ... for the mode line
;;   (shown in `mode-line-misc-info' when `quill-mode-line' is non-nil).

;;; Code:

(require 'cl-lib)
(require 'subr-x)
(require 'eglot)
(require 'jsonrpc)

(defgroup quill nil
  "The quill language server (GPT-2 and T5 in the editor)."
  :group 'tools
  :prefix "quill-")

(defcustom quill-program (let ((bin (getenv "QUILL_BIN")))
                           (if (and bin (not (string-empty-p bin))) bin "quill"))
  "The quill executable (default: $QUILL_BIN, else `quill' on `exec-path')."
  :type 'string)

(defcustom quill-program-args '("serve" "--stdio")
  "Arguments of `quill-program'."
  :type '(repeat string))

(defcustom quill-settings nil
  "Server settings, a plist mirroring the JSON settings of the README.
Sent as initializationOptions and answered for workspace/configuration (section
\"quill\").  Missing keys keep the server's defaults.  Example:
  (:model \"openai-community/gpt2\" :t5Model \"google-t5/t5-small\"
   :completion (:numSuggestions 3 :temperature 0.7)
   :diagnostics (:minTokenLogprob -12.5 :debounceMs 400)
   :t5 (:maxTokens 96))
Use :json-false for false."
  :type 'plist)

(defcustom quill-text-modes
  '((text-mode :language-id "plaintext")
    (markdown-mode :language-id "markdown")
    (gfm-mode :language-id "markdown")
    (git-commit-mode :language-id "gitcommit")
    (rst-mode :language-id "restructuredtext")
    (latex-mode :language-id "latex"))
  "Prose major modes quill serves, with the LSP languageId of each.
The server checks these languages whole (`diagnostics.languages')."
  :type '(repeat sexp))

(defcustom quill-prog-modes nil
  "Non-nil: quill also serves `prog-mode' buffers.
There it completes code and checks only comments.  This takes precedence over
other servers registered for those modes, so it is off by default.  It may also
be a list of major modes.  Takes effect in `quill-setup'."
  :type '(choice (const :tag "No" nil)
                 (const :tag "All programming modes" t)
                 (repeat :tag "These modes" symbol)))

(defcustom quill-languages '("German" "French" "Romanian")
  "Languages `quill-translate-region' offers."
  :type '(repeat string))

(defcustom quill-request-timeout 600
  "Seconds to wait for a T5 command (the model may have to load first)."
  :type 'integer)

(defcustom quill-mode-line t
  "Non-nil: show `quill-status' in `mode-line-misc-info'."
  :type 'boolean)

;;;; The server class

(defclass quill-eglot-server (eglot-lsp-server) ()
  :documentation "The quill language server.")

(defun quill--json (plist)
  "PLIST as a JSON object for jsonrpc (an empty object when nil)."
  (or plist (make-hash-table)))

(defun quill--settings (&optional server)
  "The settings for SERVER.
The section :quill of `eglot-workspace-configuration' (e.g. from .dir-locals.el)
when there is one, else `quill-settings'."
  (or (and server
           (fboundp 'eglot--workspace-configuration-plist)
           (plist-get (ignore-errors (eglot--workspace-configuration-plist server)) :quill))
      quill-settings))

(cl-defmethod eglot-initialization-options ((server quill-eglot-server))
  "quill's settings go in initializationOptions."
  (quill--json (quill--settings server)))

(defun quill--signal-configuration (orig server &rest args)
  "Around `eglot-signal-didChangeConfiguration' (ORIG): send quill its settings.
eglot sends `eglot-workspace-configuration' (often empty) to SERVER after
connecting; for quill that would mean \='all defaults\=', so the section :quill
is filled in.  ARGS go to ORIG for other servers."
  (if (not (cl-typep server 'quill-eglot-server))
      (apply orig server args)
    (let ((conf (and (fboundp 'eglot--workspace-configuration-plist)
                     (ignore-errors (eglot--workspace-configuration-plist server)))))
      (jsonrpc-notify server :workspace/didChangeConfiguration
                      (list :settings
                            (if (plist-get conf :quill)
                                conf
                              (append (list :quill (quill--json quill-settings)) conf)))))))

(advice-add 'eglot-signal-didChangeConfiguration :around #'quill--signal-configuration)

(cl-defmethod eglot-client-capabilities ((_server quill-eglot-server))
  "Announce workDoneProgress so that quill reports the model load."
  (let* ((caps (cl-call-next-method))
         (window (plist-get caps :window)))
    (plist-put caps :window (plist-put window :workDoneProgress t))))

(cl-defmethod eglot-handle-request
  ((server quill-eglot-server) (_method (eql workspace/configuration)) &key items)
  "Answer the pull of the section \"quill\" from `quill-settings'."
  (apply #'vector
         (mapcar (lambda (item)
                   (if (equal (plist-get item :section) "quill")
                       (quill--json (quill--settings server))
                     nil))
                 items)))

(cl-defmethod eglot-handle-request
  ((_server quill-eglot-server) (_method (eql window/workDoneProgress/create)) &rest _)
  "Accept progress tokens."
  nil)

;;;; Status from $/progress

(defvar quill-status-change-hook nil
  "Functions run (with no arguments) when `quill-status' may have changed.")

(defvar quill--progress (make-hash-table :test #'equal)
  "Token -> (MESSAGE . PERCENTAGE) of the work in progress.")
(defvar quill--load-token nil "The token of the model load in progress.")
(defvar quill--phase nil "nil, `starting', `loading', `ready' or `error'.")
(defvar quill--last-error nil "The last error quill reported.")

(cl-defmethod eglot-handle-notification
  ((_server quill-eglot-server) (_method (eql $/progress)) &key token value)
  "Track quill's progress for `quill-status'."
  (let* ((token (format "%s" token))
         (kind (plist-get value :kind))
         (message (plist-get value :message))
         (pct (plist-get value :percentage)))
    (pcase kind
      ("begin"
       (puthash token (cons (or message "") pct) quill--progress)
       (when (or (string-prefix-p "quill/load" token)
                 (and message (string-match-p "\\`\\(loading\\|downloading\\)" message)))
         (setq quill--load-token token quill--phase 'loading quill--last-error nil)))
      ("report"
       (let ((cur (gethash token quill--progress (cons "" nil))))
         (puthash token (cons (if (and message (not (equal token quill--load-token)))
                                  message
                                (car cur))
                              (or pct (cdr cur)))
                  quill--progress)))
      ("end"
       (remhash token quill--progress)
       (when (equal token quill--load-token)
         (setq quill--load-token nil)
         (if (and message (string-match-p "fail" message))
             (setq quill--phase 'error quill--last-error message)
           (setq quill--phase 'ready)))))
    (force-mode-line-update t)
    (run-hooks 'quill-status-change-hook)))

(cl-defmethod eglot-handle-notification
  ((_server quill-eglot-server) (_method (eql window/showMessage)) &key type message)
  "Remember errors (a model that cannot load) for `quill-status', then show them."
  (when (eq type 1)
    (setq quill--phase 'error quill--last-error message)
    (force-mode-line-update t)
    (run-hooks 'quill-status-change-hook))
  (cl-call-next-method))

(defun quill--servers ()
  "The running quill servers."
  (cl-remove-if-not (lambda (s) (cl-typep s 'quill-eglot-server))
                    (cl-loop for servers being the hash-values of eglot--servers-by-project
                             append servers)))

(defun quill-status ()
  "The model's status: \"quill: loading 40%\", \"quill: ready\", \"quill: summarizing\",
\"quill: error\", or \"\" when no quill server runs."
  (cond
   ((null (quill--servers)) "")
   ((eq quill--phase 'error) "quill: error")
   ((and quill--load-token (gethash quill--load-token quill--progress))
    (format "quill: loading %d%%" (or (cdr (gethash quill--load-token quill--progress)) 0)))
   ((> (hash-table-count quill--progress) 0)
    (let (out)
      (maphash (lambda (_k v)
                 (unless out
                   (let ((verb (car (split-string (or (car v) "working")))))
                     (setq out (if (member verb '("loading" "downloading"))
                                   (format "quill: loading %d%%" (or (cdr v) 0))
                                 (concat "quill: " (or verb "working")))))))
               quill--progress)
      out))
   ((eq quill--phase 'ready) "quill: ready")
   (t "quill: starting")))

(defun quill-last-error ()
  "The last error quill reported, or nil."
  quill--last-error)

;;;; Registration

(defun quill--contact (&optional _interactive)
  "The eglot contact of quill."
  `(quill-eglot-server ,quill-program ,@quill-program-args))

(defun quill--entry-p (entry)
  (eq (cdr-safe entry) #'quill--contact))

;;;###autoload
(defun quill-setup ()
  "Register quill with eglot for `quill-text-modes' (and `quill-prog-modes')."
  (interactive)
  (setq eglot-server-programs (cl-remove-if #'quill--entry-p eglot-server-programs))
  (when quill-prog-modes
    (push (cons (if (eq quill-prog-modes t) '(prog-mode) quill-prog-modes) #'quill--contact)
          eglot-server-programs))
  (push (cons quill-text-modes #'quill--contact) eglot-server-programs)
  (when quill-mode-line
    (unless (member '(:eval (quill-status)) mode-line-misc-info)
      (setq-default mode-line-misc-info
                    (append mode-line-misc-info '((:eval (quill-status)) " "))))))

;;;; T5 commands

(defun quill--server ()
  "The quill server of this buffer, or an error that says what to do."
  (let ((server (eglot-current-server)))
    (unless (and server (cl-typep server 'quill-eglot-server))
      (user-error "quill: no quill server manages this buffer; run M-x quill-setup and M-x eglot"))
    server))

(defun quill--range (beg end)
  "The LSP range of BEG..END."
  (list :start (eglot--pos-to-lsp-position beg)
        :end (eglot--pos-to-lsp-position end)))

(defun quill--execute (command args)
  "Run quill COMMAND (e.g. \"quill.summarize\") with the argument plist ARGS.
Returns the result plist."
  (let ((server (quill--server)))
    ;; Send pending edits first, so the server reads what the buffer shows.
    (eglot--signal-textDocument/didChange)
    (jsonrpc-request server :workspace/executeCommand
                     (list :command command
                           :arguments (vector (append (list :uri (plist-get (eglot--TextDocumentIdentifier) :uri))
                                                      args)))
                     :timeout quill-request-timeout)))

(defvar-local quill--source nil "The buffer a *quill* result came from.")
(defvar-local quill--beg nil "Marker: start of the text the result is about.")
(defvar-local quill--end nil "Marker: end of the text the result is about.")
(defvar-local quill--result nil "The result shown.")
(defvar-local quill--replaceable nil "Non-nil when `r' may replace the text.")

(defvar quill-result-mode-map
  (let ((map (make-sparse-keymap)))
    (define-key map "i" #'quill-result-insert-below)
    (define-key map "r" #'quill-result-replace)
    (define-key map "w" #'quill-result-copy)
    (define-key map "q" #'quit-window)
    map)
  "Keys of the *quill* result buffer.")

(define-derived-mode quill-result-mode special-mode "quill"
  "A quill result.
\\<quill-result-mode-map>\\[quill-result-insert-below] inserts it below the text it is about,
\\[quill-result-replace] replaces that text, \\[quill-result-copy] copies it,
\\[quit-window] quits."
  (setq-local truncate-lines nil)
  (visual-line-mode 1))

(defun quill--show (title text beg end replaceable)
  "Show TEXT in the *quill* buffer under TITLE; BEG..END is the source text."
  (let ((source (current-buffer))
        (b (copy-marker beg))
        (e (copy-marker end t)))
    (with-current-buffer (get-buffer-create "*quill*")
      (let ((inhibit-read-only t))
        (quill-result-mode)
        (erase-buffer)
        (insert text)
        (setq header-line-format
              (format " quill: %s   i insert below · r replace · w copy · q quit" title))
        (setq quill--source source quill--beg b quill--end e
              quill--result text quill--replaceable replaceable)
        (goto-char (point-min)))
      (display-buffer (current-buffer)))
    text))

(defun quill-result-insert-below ()
  "Insert the result below the text it is about (after a blank line)."
  (interactive)
  (let ((text quill--result) (end quill--end) (source quill--source))
    (quit-window)
    (with-current-buffer source
      (save-excursion
        (goto-char end)
        (end-of-line)
        (insert "\n\n" text)))))

(defun quill-result-replace ()
  "Replace the text the result is about with the result."
  (interactive)
  (unless quill--replaceable
    (user-error "quill: no region to replace; run the command on a region"))
  (let ((text quill--result) (beg quill--beg) (end quill--end) (source quill--source))
    (quit-window)
    (with-current-buffer source
      (save-excursion
        (goto-char beg)
        (delete-region beg end)
        (insert text)))))

(defun quill-result-copy ()
  "Copy the result to the kill ring."
  (interactive)
  (kill-new quill--result)
  (message "quill: copied"))

(defun quill--bounds (beg end)
  "BEG..END when both are given, else the whole buffer."
  (if (and beg end) (cons (min beg end) (max beg end)) (cons (point-min) (point-max))))

;;;###autoload
(defun quill-summarize-region (beg end)
  "Summarize BEG..END (or the whole buffer) with T5.
Shows the summary in the *quill* buffer and returns it."
  (interactive (if (use-region-p) (list (region-beginning) (region-end)) (list nil nil)))
  (let* ((bounds (quill--bounds beg end))
         (args (and beg end (list :range (quill--range (car bounds) (cdr bounds)))))
         (result (quill--execute "quill.summarize" args)))
    (quill--show "summary" (plist-get result :summary) (car bounds) (cdr bounds) (and beg end))))

;;;###autoload
(defun quill-ask (question &optional beg end)
  "Answer QUESTION about BEG..END (or the whole buffer) with T5.
Shows the answer in the *quill* buffer and returns it."
  (interactive (append (list (read-string "Ask quill: "))
                       (if (use-region-p) (list (region-beginning) (region-end)))))
  (when (string-empty-p (string-trim question))
    (user-error "quill: ask a question"))
  (let* ((bounds (quill--bounds beg end))
         (args (append (list :question question)
                       (and beg end (list :range (quill--range (car bounds) (cdr bounds))))))
         (result (quill--execute "quill.answer" args)))
    (quill--show "answer" (plist-get result :answer)
                 (if (and beg end) (car bounds) (line-beginning-position))
                 (if (and beg end) (cdr bounds) (line-end-position))
                 (and beg end))))

;;;###autoload
(defun quill-translate-region (beg end language)
  "Translate BEG..END (or the whole buffer) to LANGUAGE with T5.
Shows the translation in the *quill* buffer and returns it."
  (interactive (append (if (use-region-p) (list (region-beginning) (region-end)) (list nil nil))
                       (list (completing-read "Translate to: " quill-languages nil nil nil nil
                                              (car quill-languages)))))
  (let* ((bounds (quill--bounds beg end))
         (args (append (list :to language)
                       (and beg end (list :range (quill--range (car bounds) (cdr bounds))))))
         (result (quill--execute "quill.translate" args)))
    (quill--show (format "translation (%s)" language) (plist-get result :translation)
                 (car bounds) (cdr bounds) t)))

;;;; Quick fixes

(defun quill--apply-code-action (server action)
  "Apply the code ACTION (a plist) from SERVER, across eglot versions."
  (cond
   ((fboundp 'eglot-execute) (eglot-execute server action))
   ((fboundp 'eglot--read-execute-code-action)
    (eglot--read-execute-code-action (list action) server (or (plist-get action :kind) "quickfix")))
   (t (let ((edit (plist-get action :edit)))
        (when edit (eglot--apply-workspace-edit edit))))))

;;;###autoload
(defun quill-fix-at-point ()
  "Replace the flagged word at point with the model's preferred alternative.
Returns the title of the fix applied."
  (interactive)
  (let* ((server (quill--server))
         (diags (cl-remove-if-not
                 (lambda (d) (eq (flymake-diagnostic-backend d) 'eglot-flymake-backend))
                 (flymake-diagnostics (point))))
         (diag (or (car diags) (user-error "quill: no flagged word at point")))
         (actions (eglot-code-actions (flymake-diagnostic-beg diag)
                                      (flymake-diagnostic-end diag) "quickfix"))
         (fix (or (cl-find-if (lambda (a) (eq (plist-get a :isPreferred) t)) actions)
                  (car actions)
                  (user-error "quill: no quick fix here"))))
    (quill--apply-code-action server fix)
    (plist-get fix :title)))

(provide 'quill)
;;; quill.el ends here
