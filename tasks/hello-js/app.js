// The seed framework's `task_one` as a beanbox task written in JavaScript.
//
// Built into a WebAssembly component by componentize-js (see build.sh). The
// world's imports are ES modules named after their WIT interfaces; its
// exports are this module's exported functions, in camelCase (`task-one` is
// `taskOne`).

import { log } from "beanbox:task/log@0.1.0";
import { info } from "beanbox:task/job@0.1.0";

export function taskOne(arg1, arg2, arg3) {
  log("info", "task_one joining 3 strings");
  return arg1 + arg2 + arg3;
}

export function describeJob() {
  const job = info(); // `id` is a u64, so a BigInt
  log("info", `describing job ${job.id}`);
  return `id=${job.id} tube=${job.tube} task=${job.task} attempt=${job.attempt}`;
}

// Calls this instance has served: module state lives as long as the instance.
let calls = 0;

export function countCalls() {
  calls += 1;
  return calls;
}

export function boom(message) {
  throw new Error(message);
}

// An export returning `result<T, string>`: componentize-js turns a thrown
// string, or a thrown value's `payload` property, into `err`; any other
// thrown value (a plain `Error`) traps ("expected a string, received
// [object]"). `result` wraps such an export so that an `Error` thrown in it,
// by the task or by code it calls, becomes `err` with the error's message.
function result(task) {
  return (...args) => {
    try {
      return task(...args);
    } catch (e) {
      if (e instanceof Error && !Object.hasOwn(e, "payload")) {
        e.payload = e.message;
      }
      throw e;
    }
  };
}

export const fail = result((message) => {
  throw new Error(message);
});
