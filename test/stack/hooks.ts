/**
 * The vitest hooks every end-to-end file needs around one Stack: create it (and run the file's own set-up)
 * before the tests, destroy it after them, print the daemons' logs when a test fails.
 */
import { afterAll, afterEach, beforeAll, type TestContext } from 'vitest';
import { Stack, type StackOptions } from './stack.js';

export function useStack(opts: StackOptions, setup?: (stack: Stack) => Promise<void>, timeoutMs = 240_000): () => Stack {
  let stack: Stack | undefined;
  beforeAll(async () => {
    stack = await Stack.create(opts);
    await setup?.(stack);
  }, timeoutMs);
  afterAll(async () => {
    await stack?.destroy();
  });
  afterEach((ctx: TestContext) => {
    if (ctx.task.result?.state === 'fail') console.log(stack?.world.dumpLogs(40));
  });
  return () => {
    if (!stack) throw new Error('the test stack is not up (its set-up failed)');
    return stack;
  };
}
