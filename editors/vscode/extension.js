// Starts `ruledsl lsp` for .rule files; everything else (diagnostics, hover, ...) comes from the server.
const vscode = require("vscode");
const { LanguageClient } = require("vscode-languageclient/node");

let client;

function activate(context) {
  const [command, ...args] = vscode.workspace.getConfiguration("ruledsl").get("server.command");
  client = new LanguageClient(
    "ruledsl",
    "ruledsl",
    { command, args },
    { documentSelector: [{ language: "ruledsl" }] }
  );
  context.subscriptions.push(client);
  return client.start();
}

function deactivate() {
  return client ? client.stop() : undefined;
}

module.exports = { activate, deactivate };
