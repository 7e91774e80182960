/*
 * What the binding's tests share with tests/node (the quill binary, the ../shared models
 * and the command line's output to compare with) and the model they all load.
 */
import { Model } from "../index.js";
import { assertSameText, cliBytes, sharedFile } from "../../../tests/node/quill.mjs";

export { assertSameText, cliBytes, sharedFile };
export { QUILL, ROOT, tempDir } from "../../../tests/node/quill.mjs";

export const STORIES = sharedFile("models/stories260K.gguf");
export const PROMPT = "Once upon a time";

/* stories260K, loaded once per test file (node --test runs each file in its own process). */
let stories = null;
export async function storiesModel() {
  stories ??= await Model.load(STORIES.path);
  return stories;
}
